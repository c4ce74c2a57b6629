"""orbax checkpoints of the trainer: the TrainState plus a JSON sidecar, atomic, last N kept.

    <dir>/<step>/state   TrainState: params, opt_state, step, rng, nonfinite  (StandardSave)
    <dir>/<step>/meta    JSON: grain iterator state, engine weight version, loop counters

orbax writes a step under a temporary name and renames it when complete, so a process killed
mid-save leaves the previous checkpoint as the latest. A state whose parameters or optimizer
moments are not finite is never written (`NonFiniteStateError`). The frozen reference is not
saved: it is rebuilt from the run's initial model, which the config names.

Restoring takes the abstract TrainState (shapes, dtypes and shardings of the current mesh), so
a checkpoint written on one mesh restores onto another.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from pivotrl_jax import faults
from pivotrl_jax.train.state import TrainState


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
        """Writes step `step` (raises NonFiniteStateError for a NaN/inf state)."""
        if not state_is_finite(state):
            raise NonFiniteStateError(f"refusing to checkpoint step {step}: non-finite state")
        faults.point("checkpoint.before_save")
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        faults.point("checkpoint.saved")

    def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """(TrainState placed as `abstract_state` says, meta) of step `step`."""
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.meta)

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
