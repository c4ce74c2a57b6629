"""Export a `pivotrl train` / `pivotrl sft` checkpoint as an HF safetensors folder."""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

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


def main(fv: flags.FlagValues) -> int:
    from pivotrl_jax.models.sharding import single_device_mesh
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
    policy = make_policy(config, single_device_mesh())
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
