"""Turn-level GRPO on pivots: sample G actions per pivot, verify, update, sync (resumable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags

from pivotrl_jax import config as config_lib
from pivotrl_jax import distributed
from pivotrl_jax.errors import ConfigError, InputError
from pivotrl_jax.rollout.factory import ENGINE_BUILDERS

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
    import pivotrl_jax.envs  # noqa: F401  (registers the domains' verifier sandboxes)
    from pivotrl_jax.commands.model_folder import check_model_dir, load_tokenizer
    from pivotrl_jax.data import loader
    from pivotrl_jax.models.sharding import MESH_AXES
    from pivotrl_jax.rollout.factory import open_engine
    from pivotrl_jax.rollout.text import completion_text
    from pivotrl_jax.train import loop
    from pivotrl_jax.train.bookkeeping import TrainingDiverged
    from pivotrl_jax.train.checkpoint import NonFiniteStateError
    from pivotrl_jax.train.grpo_config import grpo_config
    from pivotrl_jax.train.parts import build_parts

    cfg = fv.config
    episodes = bool(tuple(cfg.episodes.domains))
    config_lib.require(cfg, "model_dir", *(() if episodes else ("pivots",)))
    try:
        gcfg = grpo_config(cfg)
        ENGINE_BUILDERS.get(gcfg.engine.name)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(str(e)) from None
    check_processes(gcfg, distributed.process_count())
    scorer = scorer_from_config(cfg)
    if gcfg.verifier_for_all:
        from pivotrl_jax.pivots.profile import VerifierSpec

        name = gcfg.verifier_for_all
        try:
            scorer.build(VerifierSpec(name, scorer.params_by_name.get(name, {})))
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"verifier_for_all: {e}") from None
    model_config = check_model_dir(gcfg.model_dir)
    tokenizer = load_tokenizer(gcfg.model_dir, model_config.get("vocab_size"))
    out = Path(fv.output)
    out.mkdir(parents=True, exist_ok=True)
    config_lib.write_resolved_config(cfg, out, command=" ".join(sys.argv))

    mesh = config_lib.mesh_from_config(gcfg.mesh_shape, MESH_AXES)
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
        data = iter(load_pivots(loader, gcfg, tokenizer, model_config.get("vocab_size"), scorer))
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
            scorer,
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
        try:
            summary = loop.run(parts, out, step_fn)
        except (TrainingDiverged, NonFiniteStateError) as e:
            print(f"pivotrl train: stopped: {e}", file=sys.stderr)
            return 1
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


def load_pivots(loader, gcfg, tokenizer, vocab_size=None, scorer=None):
    """The pivot records as a grain dataset (`gcfg.pivots`, shard prefix `pivots_prefix`); each
    process reads its `pivots_per_step / processes` of every batch. Every record is checked
    first (fields, token ids in the vocabulary, a verifier that exists)."""
    from pivotrl_jax.data.record_checks import prompt_record_check

    record_check = prompt_record_check(vocab_size)

    def check(record, path, index):
        record_check(record, path, index)
        if len(record["prompt_ids"]) > gcfg.max_prompt_len:
            raise InputError(
                f"{len(record['prompt_ids'])} tokens, over train.max_prompt_len "
                f"{gcfg.max_prompt_len} (extract with max_prompt_tokens)",
                path=path,
                line=index + 1,
                field="prompt_ids",
                reason="prompt_too_long",
            )
        if scorer is not None and not gcfg.verifier_for_all:
            scorer.check(record, path, index)

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
            check=check,
        )
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read pivots: {e}", path=gcfg.pivots) from None
