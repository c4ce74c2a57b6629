"""Supervised fine-tuning on the trajectories' assistant turns (the SFT baseline; resumable)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax import distributed
from pivotrl_jax.errors import ConfigError, InputError

DEFAULT_CONFIG = "configs/train.py:sft"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "output",
        None,
        "Run folder: checkpoints/, metrics.jsonl, config.json (resumes from its latest "
        "checkpoint); `pivotrl export` turns it into an HF folder.",
        flag_values=fv,
        required=True,
    )


def main(fv: flags.FlagValues) -> int:
    from pivotrl_jax.commands.model_folder import check_model_dir, load_tokenizer
    from pivotrl_jax.data import loader
    from pivotrl_jax.data import records as records_io
    from pivotrl_jax.data.record_checks import sft_record_check
    from pivotrl_jax.models.sharding import MESH_AXES
    from pivotrl_jax.train import loop, sft
    from pivotrl_jax.train.bookkeeping import TrainingDiverged
    from pivotrl_jax.train.checkpoint import NonFiniteStateError
    from pivotrl_jax.train.optim import OptimConfig, make_optimizer, make_schedule, policy_config
    from pivotrl_jax.train.state import create_train_state, make_policy, place_params
    from pivotrl_jax.train.step import StepConfig, make_train_step

    cfg = fv.config
    config_lib.require(cfg, "model_dir", "trajectories")
    if distributed.process_count() > 1:
        raise ConfigError("pivotrl sft runs in one process (unset PIVOTRL_DISTRIBUTED)")
    s = cfg.sft
    try:
        optim = OptimConfig(**cfg.optim.to_dict())
        for key in ("batch_size", "epochs"):
            if s[key] < 1:
                raise ValueError(f"sft.{key} must be >= 1, got {s[key]}")
        if not tuple(s.length_buckets):
            raise ValueError("sft.length_buckets is empty")
        count = records_io.count_records(cfg.trajectories, s.prefix)
        steps = s.steps or max(1, math.ceil(count * s.epochs / s.batch_size))
        scfg = sft.SftConfig(
            steps=steps,
            batch_size=s.batch_size,
            length_buckets=tuple(s.length_buckets),
            micro_batches=cfg.train.micro_batches,
            pack=cfg.train.pack,
            checkpoint_every=cfg.checkpoint.every,
            keep_checkpoints=cfg.checkpoint.keep,
            max_nonfinite=cfg.train.max_nonfinite,
            tensorboard=cfg.log.tensorboard,
            progress=cfg.log.progress,
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise InputError(f"cannot read trajectories: {e}", path=cfg.trajectories) from None
    if count == 0:
        raise InputError(f"no {s.prefix} records found", path=cfg.trajectories)
    model_config = check_model_dir(cfg.model_dir)
    tokenizer = load_tokenizer(cfg.model_dir, model_config.get("vocab_size"))
    out = Path(fv.output)
    out.mkdir(parents=True, exist_ok=True)
    config_lib.write_resolved_config(cfg, out, command=" ".join(sys.argv))

    mesh = config_lib.mesh_from_config(tuple(cfg.mesh_shape), MESH_AXES)
    try:
        data = loader.dataset_from_dir(
            cfg.trajectories,
            loader.LoaderConfig(
                batch_size=min(s.batch_size, count),
                max_prompt_len=max(s.length_buckets),
                pad_id=tokenizer.pad_token_id,
                seed=cfg.seed,
            ),
            prefix=s.prefix,
            check=sft_record_check(model_config.get("vocab_size")),
        )
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read trajectories: {e}", path=cfg.trajectories) from None
    overrides = {k: v for k, v in cfg.model_overrides.to_dict().items() if v and v != "none"}
    params, model_config = loop.initial_params(cfg.model_dir, mesh, overrides)
    policy = make_policy(policy_config(model_config, optim), mesh)
    tx = make_optimizer(optim)
    state = create_train_state(policy, tx, place_params(policy, params, optim.dtype), cfg.seed)
    del params
    step = make_train_step(
        policy,
        tx,
        sft.sft_objective(),
        StepConfig(
            micro_batches=scfg.micro_batches,
            entropy_metric=cfg.train.entropy_metric,
            router_aux_coef=cfg.train.router_aux_coef,
        ),
        make_schedule(optim),
        master_dtype=optim.dtype,
    )
    row_multiple = scfg.micro_batches * math.prod(
        mesh.shape[a] for a in policy.rules.batch if a in mesh.shape
    )
    try:
        state, summary = sft.run_sft(
            scfg, optim, policy, state, step, iter(data), out, row_multiple
        )
    except (TrainingDiverged, NonFiniteStateError) as e:
        print(f"pivotrl sft: stopped: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "last"}))
    return 0
