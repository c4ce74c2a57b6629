"""Turn-level GRPO on pivots: sample G actions per pivot, verify, update, sync (resumable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax import distributed
from pivotrl_jax.errors import ConfigError, InputError

DEFAULT_CONFIG = "configs/train.py"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "output",
        None,
        "Run folder: checkpoints/, metrics.jsonl, tensorboard/, config.json (resumes from its "
        "latest checkpoint).",
        flag_values=fv,
        required=True,
    )


def scorer_from_config(cfg):
    """The per-domain verifiers of the config (the same lookup as `pivotrl profile`)."""
    from pivotrl_jax.pivots.profile import DomainVerifiers

    return DomainVerifiers.from_mappings(
        config_lib.to_dict(cfg.verifiers), config_lib.to_dict(cfg.verifier_params)
    )


def main(fv: flags.FlagValues) -> int:
    from transformers import AutoTokenizer

    import pivotrl_jax.envs  # noqa: F401  (registers the domains' verifier sandboxes)
    from pivotrl_jax.data import loader
    from pivotrl_jax.models.sharding import MESH_AXES
    from pivotrl_jax.rollout.factory import open_engine
    from pivotrl_jax.rollout.text import completion_text
    from pivotrl_jax.train import loop
    from pivotrl_jax.train.grpo_config import grpo_config
    from pivotrl_jax.train.parts import build_parts

    cfg = fv.config
    episodes = bool(tuple(cfg.episodes.domains))
    config_lib.require(cfg, "model_dir", *(() if episodes else ("pivots",)))
    try:
        gcfg = grpo_config(cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(str(e)) from None
    check_processes(gcfg, distributed.process_count())
    out = Path(fv.output)
    out.mkdir(parents=True, exist_ok=True)
    config_lib.write_resolved_config(cfg, out, command=" ".join(sys.argv))

    mesh = config_lib.mesh_from_config(gcfg.mesh_shape, MESH_AXES)
    tokenizer = AutoTokenizer.from_pretrained(gcfg.model_dir)
    stop_ids = (tokenizer.eos_token_id,)
    if episodes:
        from pivotrl_jax.train.episodic import TaskStream

        try:
            data = TaskStream(
                gcfg.episode_domains,
                gcfg.episode_tasks_per_domain,
                gcfg.seed,
                gcfg.pivots_per_step,
                pool_seed=None if gcfg.episode_tasks_seed < 0 else gcfg.episode_tasks_seed,
            )
        except KeyError as e:
            raise ConfigError(f"episodes.domains: {e}") from None
    else:
        data = iter(load_pivots(loader, gcfg, tokenizer))
    params, model_config = loop.initial_params(gcfg.model_dir, mesh, gcfg.model_overrides)

    def decode(ids):
        return completion_text(tokenizer, ids, stop_ids)

    with open_engine(gcfg.engine, gcfg.model_dir, mesh) as engine:
        parts = build_parts(
            gcfg,
            mesh,
            engine,
            decode,
            stop_ids,
            scorer_from_config(cfg),
            data,
            params,
            model_config,
        )
        parts.tokenizer = tokenizer
        del params
        step_fn = None
        if episodes:
            from pivotrl_jax.train import episodic

            step_fn = episodic.iteration
        summary = loop.run(parts, out, step_fn)
    if distributed.is_primary():
        print(json.dumps({k: v for k, v in summary.items() if k != "last"}))
    return 0


def check_processes(gcfg, processes: int) -> None:
    """What a run over several JAX processes needs (each process reads its slice of the pivots
    and the servers are shared); a ConfigError naming the key otherwise."""
    if processes == 1:
        return
    if gcfg.episode_domains or gcfg.reprofile_enabled:
        raise ConfigError(
            "episodes.domains and reprofile.enabled run in one process; this run has "
            f"{processes} (unset PIVOTRL_DISTRIBUTED)"
        )
    if gcfg.pivots_per_step % processes:
        raise ConfigError(
            f"train.pivots_per_step={gcfg.pivots_per_step} does not split over {processes} "
            "processes"
        )
    if gcfg.engine.name == "sglang" and not gcfg.engine.urls:
        raise ConfigError(
            "with several processes the SGLang servers are shared: start them once "
            "(launch/slurm.sbatch, launch/sglang_server.sh) and list them in engine.urls"
        )


def load_pivots(loader, gcfg, tokenizer):
    """The pivot records as a grain dataset (`gcfg.pivots`, shard prefix `pivots_prefix`): each
    process reads its `pivots_per_step / processes` of every batch."""
    try:
        return loader.dataset_from_dir(
            gcfg.pivots,
            loader.LoaderConfig(
                batch_size=gcfg.pivots_per_step // distributed.process_count(),
                max_prompt_len=gcfg.max_prompt_len,
                pad_id=tokenizer.pad_token_id,
                seed=gcfg.seed,
            ),
            prefix=gcfg.pivots_prefix,
        )
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read pivots: {e}", path=gcfg.pivots) from None
