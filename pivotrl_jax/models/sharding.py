"""Logical axis names on parameters, the table that maps them to mesh axes, and sharded creation.

Every parameter carries its logical axis names (`LOGICAL_AXES`) in the variable metadata key
`logical_axes` (set by `partitioned(init, names)`). They are kept out of flax's own
`out_sharding` key on purpose: flax reads that key as *mesh* axes whenever a mesh is set
(`jax.set_mesh`), so `nnx.eval_shape` of the model under a mesh would fail on names like
"vocab". A frozen `ShardingRules` table maps each logical name to zero or more mesh axes of
`MESH_AXES`. `param_shardings` resolves the table against a concrete mesh and parameter
shape: a dimension that the mesh axes do not divide is replicated instead (a 2-KV-head model on
a 4-way tensor axis keeps its KV heads whole), and a mesh axis is used at most once per array.

>>> mesh = make_mesh((1, 1, 1, 1))
>>> logical_to_spec(("embed", "mlp"), (8, 16), mesh, ShardingRules())
P('fsdp', 'tensor')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor", "expert")
LOGICAL_AXES = (
    "batch",
    "vocab",
    "embed",
    "heads",
    "kv_heads",
    "head_dim",
    "mlp",
    "experts",
    "layers",
)

MeshAxes = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical axis -> mesh axes. The defaults are FSDP on `embed`, Megatron-style tensor
    parallelism on heads / MLP / vocab, and expert parallelism on `experts`. Rows of the batch
    go over `expert` too, so outside the experts that axis is one more FSDP axis: `embed`
    shards over it wherever an array does not already use it for its experts."""

    batch: MeshAxes = ("data", "fsdp", "expert")  # activations and KV caches only
    vocab: MeshAxes = ("tensor",)
    embed: MeshAxes = ("fsdp", "expert")
    heads: MeshAxes = ("tensor",)
    kv_heads: MeshAxes = ("tensor",)
    head_dim: MeshAxes = ()
    mlp: MeshAxes = ("tensor",)
    experts: MeshAxes = ("expert",)
    layers: MeshAxes = ()  # the leading [n] axis of stacked layers (stacks.py): whole

    def mesh_axes(self, logical: str | None) -> MeshAxes:
        if logical is None:
            return ()
        if logical not in LOGICAL_AXES:
            raise KeyError(f"unknown logical axis {logical!r}; known: {', '.join(LOGICAL_AXES)}")
        return getattr(self, logical)


DEFAULT_RULES = ShardingRules()


def make_mesh(
    shape: Sequence[int],
    axis_names: Sequence[str] = MESH_AXES,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A mesh with Auto axes (the stock NNX layers reject the default Explicit axes)."""
    axis_types = (jax.sharding.AxisType.Auto,) * len(axis_names)
    if devices is None:
        return jax.make_mesh(tuple(shape), tuple(axis_names), axis_types=axis_types)
    devs = np.asarray(devices).reshape(tuple(shape))
    return Mesh(devs, tuple(axis_names), axis_types=axis_types)


def single_device_mesh() -> Mesh:
    """All four mesh axes of size 1 on this process's first device: the default placement
    (`jax.local_devices()`: with several processes, `jax.devices()[0]` belongs to process 0)."""
    return make_mesh((1,) * len(MESH_AXES), MESH_AXES, devices=jax.local_devices()[:1])


def logical_to_spec(
    names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: ShardingRules
) -> PartitionSpec:
    """Resolves logical `names` for an array of `shape` into a PartitionSpec on `mesh`."""
    if len(names) != len(shape):
        raise ValueError(f"logical axes {tuple(names)} do not match shape {tuple(shape)}")
    used: set[str] = set()
    spec: list[Any] = []
    for name, size in zip(names, shape):
        axes = []
        for axis in rules.mesh_axes(name):
            if axis not in mesh.shape or axis in used:
                continue
            if size % (int(np.prod([mesh.shape[a] for a in axes])) * mesh.shape[axis]):
                continue  # does not divide: leave this dimension less sharded
            axes.append(axis)
        if len(axes) > 1:  # a size-1 axis adds nothing beside another one
            axes = [a for a in axes if mesh.shape[a] > 1] or axes[:1]
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    return PartitionSpec(*spec)


def partitioned(init: Callable, names: Sequence[str | None]) -> Callable:
    """`init` tagged with logical axis `names`; placement happens later in `param_shardings`."""
    return nnx.with_metadata(init, logical_axes=tuple(names))


def logical_axes(state: nnx.State) -> nnx.State:
    """The logical axis names of every variable in `state` (a tuple per leaf)."""
    return jax.tree.map(
        lambda v: tuple(v.get_metadata().get("logical_axes") or ()),
        state,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def partition_specs(
    state: nnx.State, mesh: Mesh, rules: ShardingRules = DEFAULT_RULES
) -> nnx.State:
    """A PartitionSpec for every variable of `state` (the specs of `param_shardings`)."""
    return jax.tree.map(lambda s: s.spec, param_shardings(state, mesh, rules))


def param_shardings(
    state: nnx.State, mesh: Mesh, rules: ShardingRules = DEFAULT_RULES
) -> nnx.State:
    """A NamedSharding for every variable of `state` (abstract or concrete), by the rules."""

    def one(v: nnx.Variable) -> NamedSharding:
        names = v.get_metadata().get("logical_axes") or (None,) * len(v.shape)
        return NamedSharding(mesh, logical_to_spec(names, v.shape, mesh, rules))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def activation_sharding(mesh: Mesh, rules: ShardingRules, shape: Sequence[int]) -> NamedSharding:
    """Sharding of a [B, ...] activation or token array: batch over the batch axes."""
    names = ("batch",) + (None,) * (len(shape) - 1)
    return NamedSharding(mesh, logical_to_spec(names, shape, mesh, rules))


def create_sharded(
    make_model: Callable[[], nnx.Module], mesh: Mesh, rules: ShardingRules = DEFAULT_RULES
) -> nnx.Module:
    """Runs `make_model` (e.g. `lambda: Transformer(cfg, rngs=nnx.Rngs(0))`) under jit so that
    each parameter is born on `mesh` with its rule's sharding; no host copy of the whole model."""
    abstract = nnx.eval_shape(make_model)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = param_shardings(abstract_state, mesh, rules)
    state = jax.jit(lambda: nnx.state(make_model()), out_shardings=shardings)()
    return nnx.merge(graphdef, state)


class OnMesh:
    """A jitted function that is traced, lowered and run under `jax.set_mesh(mesh)`: the MoE
    "expert_parallel" dispatch reads the mesh while tracing (a jit traced without one runs the
    single-device dispatch, which XLA then partitions by itself)."""

    def __init__(self, jitted: Any, mesh: Mesh):
        self.jitted = jitted
        self.mesh = mesh

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with jax.set_mesh(self.mesh):
            return self.jitted(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        with jax.set_mesh(self.mesh):
            return self.jitted.lower(*args, **kwargs)
