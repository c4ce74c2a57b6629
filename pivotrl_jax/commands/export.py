"""Export a `pivotrl train` / `pivotrl sft` checkpoint as an HF safetensors folder.

One process restores the checkpoint onto its first device. Several JAX processes (a pod, a
cluster) restore it FSDP-sharded over every device, gather one parameter at a time, and process
0 alone writes the folder."""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax import distributed
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


def export_mesh():
    """The checkpoint's placement: this process's first device, or with several processes
    every device on the `fsdp` axis (no process holds the whole model)."""
    from pivotrl_jax.models.sharding import MESH_AXES, single_device_mesh

    if distributed.process_count() == 1:
        return single_device_mesh()
    return config_lib.mesh_from_config((1, -1, 1, 1), MESH_AXES)


def main(fv: flags.FlagValues) -> int:
    from pivotrl_jax.models.weights import export_hf, read_config
    from pivotrl_jax.train.checkpoint import Checkpointer
    from pivotrl_jax.train.optim import OptimConfig, make_optimizer
    from pivotrl_jax.train.state import abstract_train_state, as_nnx_state, make_policy

    run = Path(fv.run)
    try:
        resolved = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"not a training run folder ({e})", path=run) from None
    model_dir = resolved["model_dir"]
    optim = OptimConfig(**resolved["optim"])
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
            step, abstract_train_state(policy, make_optimizer(optim), optim.dtype)
        )
    out = export_hf(
        as_nnx_state(policy, state.params), config, fv.output, dtype=fv.dtype, aux_from=model_dir
    )
    if not distributed.is_primary():
        return 0
    print(
        json.dumps(
            {
                "output": str(out),
                "step": step,
                "weight_version": meta.get("weight_version"),
                "optimizer_step": int(state.step),
            }
        )
    )
    return 0
