"""The trainer's explicit state on one mesh: the policy with its optimizer, the frozen reference.

    TrainState   step, params (master dtype), opt_state, rng, nonfinite     (donated each step)
    Reference    params of pi_0 (optionally bfloat16), no optimizer state   (never donated)

Parameters are plain nested dicts of arrays (`nnx.to_pure_dict` of the model's `nnx.Param`
state), so optax, orbax and `jax.tree` see ordinary pytrees; the model's `GraphDef` travels
beside them (`Policy.graphdef`) and `models.transformer.forward(graphdef, params, ...)` merges
the two inside jit. Shardings come from the models package's logical-axis rules, resolved on
abstract shapes (`jax.eval_shape`), so nothing is materialised before it has a placement.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pivotrl_jax.models.config import DTYPES, ModelConfig
from pivotrl_jax.models.sharding import ShardingRules, param_shardings
from pivotrl_jax.models.transformer import Transformer

Array = jax.Array
Params = dict[str, Any]  # nested dict of arrays, the model's nnx.Param state as a pure dict


@struct.dataclass
class TrainState:
    """Everything one train step reads and replaces. Donated to the step."""

    step: Array  # [] int32: optimizer updates applied (skipped ones not counted)
    params: Params  # policy parameters in the master dtype
    opt_state: optax.OptState
    rng: Array  # [2] uint32: raw key data of the run's root key
    nonfinite: Array  # [] int32: updates skipped for a non-finite loss or gradient


@struct.dataclass
class Reference:
    """The frozen pi_0 on the same mesh: parameters only, never updated, never donated."""

    params: Params


@dataclasses.dataclass(frozen=True)
class Policy:
    """The static half of the model: its structure, config and parameter shardings."""

    graphdef: nnx.GraphDef
    config: ModelConfig
    param_shardings: Params  # NamedSharding per parameter, same tree as the params
    mesh: Mesh
    rules: ShardingRules
    abstract_state: nnx.State  # ShapeDtypeStruct Params: the template of `as_nnx_state`


def abstract_model(config: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, abstract nnx.Param state) without allocating a parameter."""
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("the model holds non-Param variables; the trainer expects Params only")
    return graphdef, params


def make_policy(config: ModelConfig, mesh: Mesh, rules: ShardingRules | None = None) -> Policy:
    rules = rules or ShardingRules()
    graphdef, abstract = abstract_model(config)
    shardings = nnx.to_pure_dict(param_shardings(abstract, mesh, rules))
    return Policy(graphdef, config, shardings, mesh, rules, abstract)


def as_nnx_state(policy: Policy, params: Params) -> nnx.State:
    """The pure-dict `params` as the model's `nnx.State` (what export and the JAX engine take);
    the arrays are shared, not copied."""
    state = jax.tree.map(lambda x: x, policy.abstract_state)  # fresh Variables
    nnx.replace_by_pure_dict(state, params)
    return state


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def cast(params: Params, dtype: jnp.dtype) -> Params:
    return jax.tree.map(lambda x: x.astype(dtype), params)


def init_params(policy: Policy, seed: int, dtype: jnp.dtype) -> Params:
    """Fresh parameters, each born on its sharding in `dtype`."""

    def init() -> Params:
        model = Transformer(policy.config, rngs=nnx.Rngs(seed))
        return cast(nnx.to_pure_dict(nnx.state(model, nnx.Param)), dtype)

    return jax.jit(init, out_shardings=policy.param_shardings)()


def place_params(policy: Policy, params: Params, dtype: jnp.dtype) -> Params:
    """A fresh copy of `params` (host or device) on the policy's shardings, cast to `dtype`.

    The result never shares a buffer with `params`: the policy copy is donated every step, and
    a reference that aliased it would be deleted by the first update.
    """
    out = jax.jit(partial(cast, dtype=dtype), out_shardings=policy.param_shardings)(params)
    inputs = {id(x) for x in jax.tree.leaves(params)}
    # jit forwards an unchanged input as its output; copy those to own the buffers.
    return jax.tree.map(lambda x: jnp.copy(x) if id(x) in inputs else x, out)


def opt_state_shardings(
    tx: optax.GradientTransformation, policy: Policy, abstract_params: Params
) -> optax.OptState:
    """Moments shard like their parameters; counts and other scalars are replicated; frozen
    parameters have no moments (optax.MaskedNode) and keep none."""
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    masked = lambda v: isinstance(v, optax.MaskedNode)
    return optax.tree_map_params(
        tx,
        lambda v, sharding: v if masked(v) else sharding,
        abstract_opt,
        policy.param_shardings,
        transform_non_params=lambda _: replicated(policy.mesh),
        is_leaf=masked,
    )


def state_shardings(
    tx: optax.GradientTransformation, policy: Policy, abstract_params: Params
) -> TrainState:
    rep = replicated(policy.mesh)
    return TrainState(
        step=rep,
        params=policy.param_shardings,
        opt_state=opt_state_shardings(tx, policy, abstract_params),
        rng=rep,
        nonfinite=rep,
    )


def create_train_state(
    policy: Policy,
    tx: optax.GradientTransformation,
    params: Params,  # already placed (init_params / place_params) in the master dtype
    seed: int,
) -> TrainState:
    """Wraps placed parameters with a freshly initialised optimizer state on its shardings."""
    abstract = jax.eval_shape(lambda p: p, params)
    shardings = state_shardings(tx, policy, abstract)

    def build(p: Params) -> TrainState:
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=p,
            opt_state=tx.init(p),
            rng=jax.random.key_data(jax.random.key(seed)),
            nonfinite=jnp.zeros((), jnp.int32),
        )

    # Params are donated into the state: the caller's handle moves into TrainState.params.
    return jax.jit(build, out_shardings=shardings, donate_argnums=0)(params)


def create_reference(policy: Policy, params: Params, dtype: str = "float32") -> Reference:
    """pi_0: a separate copy of `params` in `dtype` on the policy's shardings."""
    return Reference(place_params(policy, params, DTYPES[dtype]))


def abstract_train_state(
    policy: Policy, tx: optax.GradientTransformation, dtype: jnp.dtype
) -> TrainState:
    """ShapeDtypeStructs (with shardings) of a TrainState: the restore target of a checkpoint."""
    _, abstract = abstract_model(policy.config)
    abstract_params = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, dtype), nnx.to_pure_dict(abstract)
    )
    shapes = jax.eval_shape(
        lambda p: TrainState(
            step=jnp.zeros((), jnp.int32),
            params=p,
            opt_state=tx.init(p),
            rng=jax.random.key_data(jax.random.key(0)),
            nonfinite=jnp.zeros((), jnp.int32),
        ),
        abstract_params,
    )
    shardings = state_shardings(tx, policy, abstract_params)
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


def abstract_params_like(policy: Policy, dtype: jnp.dtype) -> Params:
    """ShapeDtypeStructs with shardings of the parameters in `dtype`."""
    _, abstract = abstract_model(policy.config)
    return jax.tree.map(
        lambda x, sh: jax.ShapeDtypeStruct(x.shape, dtype, sharding=sh),
        nnx.to_pure_dict(abstract),
        policy.param_shardings,
    )


def params_finite(params: Params) -> Array:
    """[] bool: every parameter entry is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
