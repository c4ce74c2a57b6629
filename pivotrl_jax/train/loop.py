"""The PivotRL training loop: turn-level GRPO on pivot states.

Per iteration (one rollout batch):

    pivots (grain) ─> engine samples G actions per pivot with the current weights ─> parse,
    verifier rewards [P, G] ─> group advantages (zero-variance groups dropped, counted) ─>
    TrainBatch ─> the log-prob passes the objective needs ─> update step(s) ─> weight sync
    (versioned) ─> metrics ─> checkpoint

Each arrow is a call into one module: configuration (grpo_config), the wiring (parts), the
rollout batch on the host (groups), batch assembly and update (update), and the run's
bookkeeping (bookkeeping: progress, checkpoint meta, stop rules).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from pivotrl_jax import distributed, faults
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.stacks import layer_kinds
from pivotrl_jax.rollout.processes import generate_slice
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train.bookkeeping import (
    Progress,
    check_finite,
    checkpoint_meta,
    jsonable,
    reprofile_recent,
    track_reward_std,
)
from pivotrl_jax.train.checkpoint import Checkpointer
from pivotrl_jax.train.groups import (
    group_advantages,
    group_sequences,
    sampling_params,
    score_groups,
)
from pivotrl_jax.train.optim import make_optimizer
from pivotrl_jax.train.parts import Parts
from pivotrl_jax.train.state import Params, abstract_train_state
from pivotrl_jax.train.update import compile_rows, update_on


def next_pivots(data: Any, excluded: set[str], max_batches: int = 1000) -> list[dict]:
    """The next batch's pivots minus those re-profiling excluded (skipping emptied batches)."""
    for _ in range(max_batches):
        records = [r for r in next(data)["records"] if r.get("id") not in excluded]
        if records:
            return records
    raise RuntimeError(f"{max_batches} batches in a row hold only excluded pivots")


def iteration(parts: Parts, it: int, workdir: Path) -> tuple[dict[str, float], bool]:
    """One rollout batch and its update(s); returns (metrics, whether the weights changed)."""
    cfg, timer = parts.cfg, metrics_lib.StepTimer()
    G = cfg.rollout.group_size
    with timer("data"):
        records = next_pivots(parts.data, parts.progress.excluded)
        prompts = [[int(t) for t in r["prompt_ids"]] for r in records]
        if cfg.reprofile_enabled:
            parts.progress.recent.extend(jsonable(r) for r in records)
    with timer("rollout"):
        params = sampling_params(cfg, parts.stop_ids, "train", it)
        groups = generate_slice(cfg.engine.name, parts.engine, prompts, params, G)
    with timer("verify"):
        rewards, errors = score_groups(
            records,
            groups,
            parts.decode,
            parts.scorer,
            cfg.verifier_for_all,
            cfg.verifier_time_limit_s,
            cfg.score_truncated,
        )
    nonzero, keep, adv = group_advantages(cfg, rewards)
    lengths = np.asarray([[len(c.token_ids) for c in g] for g in groups])
    truncated = np.asarray([[c.finish_reason == "length" for c in g] for g in groups])
    # Metrics of the whole batch: every process's groups (these arrays with one process).
    batch = distributed.concat_rows(rewards, nonzero, lengths, truncated, errors)
    out = metrics_lib.rollout_metrics(*batch)
    seqs = group_sequences(prompts, groups, adv, keep)
    batch_lengths = batch[2]
    out["rollout/tokens"] = float(batch_lengths.sum())
    out["rollout/tokens_per_s"] = float(batch_lengths.sum()) / max(timer.seconds["rollout"], 1e-9)
    out["rollout/turns"] = float(batch_lengths.size)
    return update_on(parts, seqs, it, workdir, timer, out, max_rows=cfg.pivots_per_step * G)


IterationFn = Callable[[Parts, int, Path], tuple[dict[str, float], bool]]


def run(
    parts: Parts, out_dir: str | os.PathLike, step_fn: IterationFn | None = None
) -> dict[str, Any]:
    """Train from the latest checkpoint in `out_dir` (or from scratch) to `cfg.steps`.

    `step_fn` runs one iteration: `iteration` (turn-level GRPO on pivots, the default) or
    `train.episodic.iteration` (whole episodes in an environment, outcome reward)."""
    step_fn = step_fn or iteration
    from tqdm import tqdm

    cfg = parts.cfg
    workdir = Path(out_dir)
    ckpt = Checkpointer(workdir / "checkpoints", keep=cfg.keep_checkpoints)
    start = ckpt.latest_step()
    version = 0
    if start is not None:
        abstract = abstract_train_state(parts.policy, make_optimizer(cfg.optim), cfg.optim.dtype)
        kinds = layer_kinds(parts.policy.config)
        parts.state, meta = ckpt.restore(start, abstract, kinds)
        parts.data.set_state(meta["data_state"])
        parts.progress = Progress.from_json(meta["progress"])
        version = int(meta["weight_version"])
        if version:
            parts.sync(
                parts.engine, parts.policy, parts.state.params, version, workdir, cfg.model_dir
            )
    compile_rows(parts, cfg.compile_rows)
    writer = metrics_lib.MetricsWriter(workdir, cfg.tensorboard, resume_step=start)
    first = 0 if start is None else start
    bar = tqdm(
        range(first, cfg.steps),
        initial=first,
        total=cfg.steps,
        disable=not cfg.progress or not distributed.is_primary(),
        desc="train",
    )
    last = {}
    try:
        for it in bar:
            last, updated = step_fn(parts, it, workdir)
            faults.point("train.step_done")
            if updated:
                version = it + 1
            last["weight_version"] = float(version)
            last["optimizer_step"] = float(parts.state.step)
            if cfg.reprofile_enabled:
                track_reward_std(parts.progress, last["reward/std"], cfg.reprofile_std_below)
                if parts.progress.low_std >= cfg.reprofile_patience:
                    last.update(reprofile_recent(parts, it))
            writer.write(it + 1, last)
            faults.point("train.metrics_written")
            bar.set_postfix(reward=f"{last['reward/mean']:.3f}", loss=f"{last.get('loss', 0):.4f}")
            check_finite(int(parts.state.nonfinite), cfg.max_nonfinite, it + 1, ckpt.latest_step())
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.steps:
                ckpt.save(
                    it + 1,
                    parts.state,
                    checkpoint_meta(parts.data, version, it + 1, parts.progress),
                )
    finally:
        writer.close()
        ckpt.close()
    return {
        "iterations": cfg.steps,
        "resumed_from": first,
        "optimizer_steps": int(parts.state.step),
        "nonfinite": int(parts.state.nonfinite),
        "weight_version": version,
        "last": last,
    }


def initial_params(
    model_dir: str, mesh, overrides: Mapping[str, str]
) -> tuple[Params, ModelConfig]:
    """pi_0 from a model folder (HF safetensors or native), placed on `mesh`, as a pure dict."""
    from pivotrl_jax.models import load_model

    model, config = load_model(model_dir, mesh=mesh, **dict(overrides))
    return nnx.to_pure_dict(nnx.state(model, nnx.Param)), config
