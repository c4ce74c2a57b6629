"""Weight sync: the updated policy's parameters to the rollout engine, one function per engine
kind (`WEIGHT_SYNC`), each `sync(engine, policy, params, version, workdir, model_dir)`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pivotrl_jax import distributed, faults
from pivotrl_jax.models.weights import export_hf
from pivotrl_jax.registry import Registry
from pivotrl_jax.train.state import Params, Policy, as_nnx_state

WeightSync = Callable[[Any, Policy, Params, int, Path, str], None]
WEIGHT_SYNC: Registry[WeightSync] = Registry("weight sync")


@WEIGHT_SYNC.register("jax")
def sync_in_process(engine, policy, params, version, workdir, model_dir) -> None:
    """The in-process engine takes the trainer's arrays on device (no host copy). It keeps them:
    the next train step donates them, and this sync runs again before the next rollout."""
    del workdir, model_dir
    engine.update_weights(as_nnx_state(policy, params), version)


@WEIGHT_SYNC.register("sglang")
def sync_from_disk(engine, policy, params, version, workdir, model_dir) -> None:
    """Export an HF folder (every tensor, experts and routers included), then the servers'
    update_weights_from_disk; older exported folders are removed. With several processes the
    servers are shared: the primary writes the folder and refits them while the others wait."""
    root = workdir / "weights"
    folder = root / f"v{version:08d}"
    export_hf(as_nnx_state(policy, params), policy.config, folder, aux_from=model_dir)
    faults.point("sync.exported")
    if distributed.is_primary():
        engine.update_weights(str(folder), version)
        for old in root.iterdir():
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    else:  # completions from now on must carry the version the primary loaded
        engine.weight_version = version
    distributed.barrier(f"sglang weights v{version}")
