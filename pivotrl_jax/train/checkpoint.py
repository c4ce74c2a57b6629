"""orbax checkpoints of the trainer: the TrainState plus a JSON sidecar, atomic, last N kept.

    <dir>/<step>/state   TrainState: params, opt_state, step, rng, nonfinite  (StandardSave)
    <dir>/<step>/meta    JSON: engine weight version, loop counters (written by process 0)
    <dir>/<step>/loader/process_I-of-N.json   meta["data_state"] of process I of N: the grain
                         iterator state of that process's data slice (each process its own)

orbax writes a step under a temporary name and renames it when complete, so a process killed
mid-save leaves the previous checkpoint as the latest. A state whose parameters or optimizer
moments are not finite is never written (`NonFiniteStateError`). The frozen reference is not
saved: it is rebuilt from the run's initial model, which the config names.

Restoring takes the abstract TrainState (shapes, dtypes and shardings of the current mesh), so
a checkpoint written on one mesh restores onto another; the loader states need the same number
of processes that wrote them. A checkpoint whose parameters and moments hold one entry per layer
(written before layers were stacked, models/stacks.py) restores per layer, then is stacked.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec

from pivotrl_jax import distributed, faults
from pivotrl_jax.models.stacks import LAYERS, STACKS, stack_layers, unstack_layers
from pivotrl_jax.train.state import TrainState

LOADER_STATE = "data_state"  # the meta entry each process saves and restores for itself


class NonFiniteStateError(RuntimeError):
    """Refusal to checkpoint a TrainState holding NaN or inf."""


def state_is_finite(state: TrainState) -> bool:
    """True when every floating entry of params and optimizer state is finite."""
    leaves = [
        x
        for x in jax.tree.leaves((state.params, state.opt_state))
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return bool(_all_finite(leaves))


@jax.jit
def _all_finite(xs: list[jax.Array]) -> jax.Array:
    """One compiled program per state layout (a lambda jitted per call would compile again at
    every checkpoint and keep each program)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))


def _process_file(directory: epath.Path, index: int, count: int) -> epath.Path:
    return directory / f"process_{index}-of-{count}.json"


class ProcessJsonHandler(ocp.CheckpointHandler):
    """One JSON value per process: process I of N writes and reads `process_I-of-N.json`."""

    def save(self, directory: epath.Path, args: ProcessJsonSave) -> None:
        index, count = distributed.process_index(), distributed.process_count()
        _process_file(directory, index, count).write_text(json.dumps(args.value))

    def restore(self, directory: epath.Path, args: ProcessJsonRestore | None = None) -> Any:
        index, count = distributed.process_index(), distributed.process_count()
        path = _process_file(directory, index, count)
        if not path.exists():
            written = sorted(p.name for p in directory.glob("process_*.json"))
            raise ValueError(
                f"{path} is missing: this checkpoint holds the loader states {written}; resume "
                f"with the process count that wrote it"
            )
        return json.loads(path.read_text())

    def metadata(self, directory: epath.Path) -> None:
        return None


@ocp.args.register_with_handler(ProcessJsonHandler, for_save=True)
@dataclasses.dataclass
class ProcessJsonSave(ocp.args.CheckpointArgs):
    value: Any


@ocp.args.register_with_handler(ProcessJsonHandler, for_restore=True)
@dataclasses.dataclass
class ProcessJsonRestore(ocp.args.CheckpointArgs):
    pass


def _is_stacked(tree: Any) -> bool:
    """A params-shaped dict (the parameters, or an optimizer moment of them) with stacks."""
    return isinstance(tree, dict) and STACKS in tree


def _row(x: Any, r: int) -> Any:
    """Row r of a stacked leaf, abstract or not (a frozen parameter's MaskedNode stays one)."""
    if isinstance(x, optax.MaskedNode):
        return x
    if not isinstance(x, jax.ShapeDtypeStruct):
        return x[r]
    sharding = NamedSharding(x.sharding.mesh, PartitionSpec(*x.sharding.spec[1:]))
    return jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=sharding)


def _join(rows: list[Any]) -> Any:
    return rows[0] if isinstance(rows[0], optax.MaskedNode) else jnp.stack(rows)


def per_layer(state: Any, kinds: Sequence[bool]) -> Any:
    """`state` (a TrainState, abstract or not) with every params-shaped dict unstacked."""
    unstack = lambda t: unstack_layers(t, kinds, take=_row)
    return jax.tree.map(lambda t: unstack(t) if _is_stacked(t) else t, state, is_leaf=_is_stacked)


def stacked(state: Any, kinds: Sequence[bool]) -> Any:
    """Inverse of `per_layer` on concrete arrays."""
    is_layered = lambda t: isinstance(t, dict) and LAYERS in t
    stack = lambda t: stack_layers(t, kinds, join=_join) if is_layered(t) else t
    return jax.tree.map(stack, state, is_leaf=is_layered)


class Checkpointer:
    """Saves and restores (TrainState, meta) by step under one folder."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: TrainState, meta: dict[str, Any]) -> None:
        """Writes step `step` (raises NonFiniteStateError for a NaN/inf state). Every process
        calls it; `meta[LOADER_STATE]`, when present, is this process's own."""
        if not state_is_finite(state):
            raise NonFiniteStateError(f"refusing to checkpoint step {step}: non-finite state")
        faults.point("checkpoint.before_save")
        shared = {k: v for k, v in meta.items() if k != LOADER_STATE}
        items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(shared))
        if LOADER_STATE in meta:
            items["loader"] = ProcessJsonSave(meta[LOADER_STATE])
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._manager.wait_until_finished()
        faults.point("checkpoint.saved")

    def restore(
        self, step: int, abstract_state: TrainState, kinds: Sequence[bool] | None = None
    ) -> tuple[TrainState, dict[str, Any]]:
        """(TrainState placed as `abstract_state` says, meta) of step `step`, with this
        process's loader state as `meta[LOADER_STATE]` when the checkpoint holds one. `kinds`
        (models.stacks.layer_kinds of the config) reads a checkpoint with per-layer entries."""
        target = abstract_state
        legacy = self._per_layer(step)
        if legacy:
            if kinds is None:
                raise ValueError(f"step {step} holds per-layer parameters: pass the layer kinds")
            target = per_layer(abstract_state, kinds)
        items = dict(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
        has_loader = os.path.isdir(os.path.join(self.directory, str(step), "loader"))
        if has_loader:
            items["loader"] = ProcessJsonRestore()
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        meta = dict(out.meta)
        if has_loader:
            meta[LOADER_STATE] = out.loader
        state = out.state
        if legacy:
            shardings = jax.tree.map(lambda x: x.sharding, abstract_state)
            state = jax.jit(lambda s: stacked(s, kinds), out_shardings=shardings)(state)
        return state, meta

    def _per_layer(self, step: int) -> bool:
        """Whether step `step` stores its parameters with one entry per layer."""
        path = epath.Path(self.directory) / str(step) / "state"
        return LAYERS in ocp.PyTreeCheckpointHandler().metadata(path)["params"]

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
