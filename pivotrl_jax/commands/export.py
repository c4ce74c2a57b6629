"""Export a `pivotrl train` / `pivotrl sft` checkpoint as an HF safetensors folder.

One process restores the checkpoint onto its first device. Several JAX processes (a pod, a
cluster) restore it FSDP-sharded over every device, gather one parameter at a time, and process
0 alone writes the folder.

The folder is written beside the output under a hidden name and renamed into place when
complete: a killed export leaves the output absent (or as an earlier export left it), never
half written; running the command again redoes it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax import distributed, faults
from pivotrl_jax.errors import InputError


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "run",
        None,
        "Run folder of `pivotrl train` or `pivotrl sft`.",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_string(
        "output",
        None,
        "HF folder to write (config, safetensors, tokenizer).",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=fv)
    flags.DEFINE_enum(
        "dtype",
        None,
        ["float32", "bfloat16"],
        "On-disk dtype (default: the run's master dtype).",
        flag_values=fv,
    )


def replace_folder(staged: Path, final: Path) -> None:
    """Put the complete folder `staged` at `final`: an older `final` is moved aside first and
    removed after, so `final` is only ever absent or whole."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
        faults.point("export.old_moved")
    os.replace(staged, final)
    faults.point("export.renamed")
    shutil.rmtree(old, ignore_errors=True)


def export_mesh():
    """The checkpoint's placement: this process's first device, or with several processes
    every device on the `fsdp` axis (no process holds the whole model)."""
    from pivotrl_jax.models.sharding import MESH_AXES, single_device_mesh

    if distributed.process_count() == 1:
        return single_device_mesh()
    return config_lib.mesh_from_config((1, -1, 1, 1), MESH_AXES)


def main(fv: flags.FlagValues) -> int:
    from pivotrl_jax.commands.model_folder import check_model_dir
    from pivotrl_jax.models.stacks import layer_kinds
    from pivotrl_jax.models.weights import export_hf, read_config
    from pivotrl_jax.train.checkpoint import Checkpointer
    from pivotrl_jax.train.optim import OptimConfig, make_optimizer
    from pivotrl_jax.train.state import abstract_train_state, as_nnx_state, make_policy

    run = Path(fv.run)
    try:
        resolved = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
        model_dir = resolved["model_dir"]
        optim = OptimConfig(**resolved["optim"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"not a training run folder (its config.json: {type(e).__name__}: {e})", path=run
        ) from None
    check_model_dir(model_dir)
    config = read_config(model_dir).replace(param_dtype=optim.master_dtype)
    policy = make_policy(config, export_mesh())
    with Checkpointer(run / "checkpoints") as ckpt:
        step = fv.step if fv.step is not None else ckpt.latest_step()
        if step is None or step not in ckpt.all_steps():
            raise InputError(
                f"no checkpoint {step if step is not None else ''} (have {ckpt.all_steps()})",
                path=run / "checkpoints",
            )
        state, meta = ckpt.restore(
            step,
            abstract_train_state(policy, make_optimizer(optim), optim.dtype),
            layer_kinds(config),
        )
    final = Path(fv.output)
    staged = final.with_name(f".{final.name}.partial")
    if distributed.is_primary() and staged.exists():
        shutil.rmtree(staged)  # left by an export that was killed
    faults.point("export.restored")
    export_hf(
        as_nnx_state(policy, state.params), config, staged, dtype=fv.dtype, aux_from=model_dir
    )
    if not distributed.is_primary():
        return 0
    faults.point("export.written")
    replace_folder(staged, final)
    print(
        json.dumps(
            {
                "output": str(final),
                "step": step,
                "weight_version": meta.get("weight_version"),
                "optimizer_step": int(state.step),
            }
        )
    )
    return 0
