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
of processes that wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from pivotrl_jax import distributed, faults
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
    return bool(
        jax.jit(lambda xs: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs])))(leaves)
    )


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

    def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """(TrainState placed as `abstract_state` says, meta) of step `step`, with this
        process's loader state as `meta[LOADER_STATE]` when the checkpoint holds one."""
        items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        has_loader = os.path.isdir(os.path.join(self.directory, str(step), "loader"))
        if has_loader:
            items["loader"] = ProcessJsonRestore()
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        meta = dict(out.meta)
        if has_loader:
            meta[LOADER_STATE] = out.loader
        return out.state, meta

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
