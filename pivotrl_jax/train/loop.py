"""The PivotRL training loop: turn-level GRPO on pivot states.

Per iteration (one rollout batch):

    pivots (grain) ─> engine samples G actions per pivot with the current weights ─> parse,
    verifier rewards [P, G] ─> group advantages (zero-variance groups dropped, counted) ─>
    TrainBatch ─> old / reference logprobs ─> update step(s) ─> weight sync (versioned) ─>
    metrics ─> checkpoint

`GrpoConfig` is where the command's ConfigDict stops: `grpo_config(cfg)` converts and validates
it once, and nothing below sees a ConfigDict. Exact resume: the checkpoint holds the TrainState,
the grain iterator state and the iteration; sampling seeds derive from (seed, iteration), so a
resumed run draws the same rollouts as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pivotrl_jax import faults
from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.weights import export_hf
from pivotrl_jax.pivots.stats import stable_seed
from pivotrl_jax.registry import Registry
from pivotrl_jax.rollout.base import Completion, SamplingParams
from pivotrl_jax.rollout.factory import EngineSpec
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train.advantages import ADVANTAGES, flat_advantages, zero_variance_groups
from pivotrl_jax.train.batching import Sequence as Seq
from pivotrl_jax.train.batching import TrainBatch, make_batch
from pivotrl_jax.train.checkpoint import Checkpointer
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer, make_schedule
from pivotrl_jax.train.state import (
    Params,
    Policy,
    Reference,
    TrainState,
    abstract_train_state,
    as_nnx_state,
    create_reference,
    create_train_state,
    make_policy,
    place_params,
)
from pivotrl_jax.train.step import (
    StepConfig,
    grpo_loss,
    make_logprobs_fn,
    make_train_step,
    place_batch,
)

OLD_LOGPROBS = ("recompute", "engine")


class TrainingDiverged(RuntimeError):
    """Too many non-finite updates: the run stops (its last checkpoint is finite)."""


# ---------------------------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    group_size: int = 16  # G samples per pivot
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_new_tokens: int = 256


@dataclasses.dataclass(frozen=True)
class GrpoConfig:
    model_dir: str
    pivots: str | None
    pivots_prefix: str = "pivots-train"
    seed: int = 0
    mesh_shape: tuple[int, ...] = (1, -1, 1, 1)
    model_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    steps: int = 100
    pivots_per_step: int = 64  # P
    updates_per_batch: int = 1
    max_prompt_len: int = 2048
    length_buckets: tuple[int, ...] = ()
    pack: bool = False
    old_logprobs: str = "recompute"
    reference_dtype: str = "float32"
    kl_metric: bool = True
    max_nonfinite: int = 3
    drop_zero_variance: bool = True
    peak_tflops: float = 0.0
    advantage: str = "grpo"
    advantage_eps: float = 1e-6
    advantage_ddof: int = 1
    verifiers: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    verifier_params: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    verifier_for_all: str = ""
    verifier_time_limit_s: float = 10.0
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    tensorboard: bool = True
    progress: bool = True
    reprofile_enabled: bool = False
    reprofile_std_below: float = 0.05
    reprofile_patience: int = 5
    reprofile_lambda_diff: float = 0.6
    # End-to-end RL (train.episodic) instead of pivots: episodes of these domains' training
    # tasks; pivots_per_step is then the number of tasks per iteration.
    episode_domains: tuple[str, ...] = ()
    episode_tasks_per_domain: int = 256
    episode_tasks_seed: int = -1  # generate_tasks seed of the task pool; -1: the run seed
    episode_max_turns: int = 8
    rollout: RolloutConfig = dataclasses.field(default_factory=RolloutConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    step: StepConfig = dataclasses.field(default_factory=StepConfig)
    engine: EngineSpec = dataclasses.field(default_factory=EngineSpec)

    def __post_init__(self):
        if self.old_logprobs not in OLD_LOGPROBS:
            raise ValueError(f"old_logprobs {self.old_logprobs!r} is not one of {OLD_LOGPROBS}")
        ADVANTAGES.get(self.advantage)
        for name in ("steps", "pivots_per_step", "updates_per_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout.group_size < 2:
            raise ValueError("GRPO needs group_size >= 2")
        if self.updates_per_batch > 1 and self.old_logprobs != "recompute":
            raise ValueError(
                "updates_per_batch > 1 needs old_logprobs='recompute' (pi_old is "
                "the pre-update policy, not the rollout engine)"
            )

    @property
    def need_reference(self) -> bool:
        return self.loss.beta > 0 or self.kl_metric

    def buckets(self) -> tuple[int, ...]:
        if self.length_buckets:
            return tuple(sorted(self.length_buckets))
        top = self.max_prompt_len + self.rollout.max_new_tokens
        return tuple(2**k for k in range(6, math.ceil(math.log2(max(top, 64))) + 1))


def grpo_config(cfg: Any) -> GrpoConfig:
    """The command's ConfigDict (configs/train.py) -> a validated GrpoConfig."""
    t = cfg.train
    loss = {k: v for k, v in cfg.loss.to_dict().items()}
    overrides = {k: v for k, v in cfg.model_overrides.to_dict().items() if v}
    if overrides.get("remat") == "none":
        overrides.pop("remat")
    return GrpoConfig(
        model_dir=cfg.model_dir,
        pivots=cfg.pivots,
        pivots_prefix=cfg.pivots_prefix,
        seed=cfg.seed,
        mesh_shape=tuple(cfg.mesh_shape),
        model_overrides=overrides,
        steps=t.steps,
        pivots_per_step=t.pivots_per_step,
        updates_per_batch=t.updates_per_batch,
        max_prompt_len=t.max_prompt_len,
        length_buckets=tuple(t.length_buckets),
        pack=t.pack,
        old_logprobs=t.old_logprobs,
        reference_dtype=t.reference_dtype,
        kl_metric=t.kl_metric,
        max_nonfinite=t.max_nonfinite,
        drop_zero_variance=t.drop_zero_variance,
        peak_tflops=t.peak_tflops,
        advantage=cfg.advantage.name,
        advantage_eps=cfg.advantage.eps,
        advantage_ddof=cfg.advantage.ddof,
        verifiers=cfg.verifiers.to_dict(),
        verifier_params=cfg.verifier_params.to_dict(),
        verifier_for_all=cfg.verifier_for_all,
        verifier_time_limit_s=cfg.verifier_time_limit_s,
        checkpoint_every=cfg.checkpoint.every,
        keep_checkpoints=cfg.checkpoint.keep,
        tensorboard=cfg.log.tensorboard,
        progress=cfg.log.progress,
        reprofile_enabled=cfg.reprofile.enabled,
        reprofile_std_below=cfg.reprofile.std_below,
        reprofile_patience=cfg.reprofile.patience,
        reprofile_lambda_diff=cfg.reprofile.lambda_diff,
        episode_domains=tuple(cfg.episodes.domains),
        episode_tasks_per_domain=cfg.episodes.tasks_per_domain,
        episode_tasks_seed=cfg.episodes.tasks_seed,
        episode_max_turns=cfg.episodes.max_turns,
        rollout=RolloutConfig(**cfg.rollout.to_dict()),
        loss=LossConfig(**loss),
        optim=OptimConfig(**cfg.optim.to_dict()),
        step=StepConfig(micro_batches=t.micro_batches, entropy_metric=t.entropy_metric),
        engine=EngineSpec.from_mapping(cfg.engine.to_dict()),
    )


# ---------------------------------------------------------------------------------------------
# Weight sync: one function per engine kind.

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
    update_weights_from_disk; older exported folders are removed."""
    root = workdir / "weights"
    folder = root / f"v{version:08d}"
    export_hf(as_nnx_state(policy, params), policy.config, folder, aux_from=model_dir)
    faults.point("sync.exported")
    engine.update_weights(str(folder), version)
    for old in root.iterdir():
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Rollout -> rewards -> sequences (host side, pure given the scorer).


def score_groups(
    records: Sequence[Mapping[str, Any]],
    groups: Sequence[Sequence[Completion]],
    decode: Callable[[Sequence[int]], str],
    scorer: Any,
    verifier_for_all: str,
    time_limit_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(rewards [P, G], verifier errors [P, G] bool) for each completion of each pivot."""
    rewards = np.zeros((len(groups), len(groups[0])), np.float32)
    errors = np.zeros(rewards.shape, bool)
    for p, (rec, comps) in enumerate(zip(records, groups, strict=True)):
        if verifier_for_all:
            rec = {**rec, "verifier": verifier_for_all, "domain": ""}
        for g, comp in enumerate(comps):
            res = scorer.score(rec, decode(comp.token_ids), time_limit_s)
            rewards[p, g] = res.reward
            errors[p, g] = res.reason.startswith("error") or res.reason == "timeout"
    return rewards, errors


def group_sequences(
    prompts: Sequence[Sequence[int]],
    groups: Sequence[Sequence[Completion]],
    advantages: np.ndarray,  # [P, G]
    keep: np.ndarray,  # [P] bool
) -> list[Seq]:
    """The kept groups' completions as trainer sequences (empty completions carry no token)."""
    out = []
    for p in np.flatnonzero(keep):
        for g, comp in enumerate(groups[p]):
            if comp.token_ids:
                out.append(
                    Seq(
                        tuple(int(t) for t in prompts[p]),
                        comp.token_ids,
                        comp.logprobs,
                        float(advantages[p, g]),
                    )
                )
    return out


# ---------------------------------------------------------------------------------------------
# The run.


@dataclasses.dataclass
class Progress:
    """Host-side loop state beyond the TrainState; saved in the checkpoint's meta."""

    low_std: int = 0  # consecutive batches with reward std below reprofile_std_below
    recent: list[dict] = dataclasses.field(default_factory=list)  # those batches' pivots
    excluded: set[str] = dataclasses.field(default_factory=set)  # ids re-profiling dropped
    rounds: int = 0  # re-profiling rounds so far

    def to_json(self) -> dict[str, Any]:
        return {
            "low_std": self.low_std,
            "recent": self.recent,
            "excluded": sorted(self.excluded),
            "rounds": self.rounds,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Progress:
        return cls(d["low_std"], list(d["recent"]), set(d["excluded"]), d["rounds"])


def _jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


@dataclasses.dataclass
class Parts:
    """What the loop wires together; built by `build` (or by a test with its own engine)."""

    cfg: GrpoConfig
    policy: Policy
    state: TrainState
    reference: Reference | None
    train_step: Callable
    logprobs_fn: Callable
    engine: Any
    sync: WeightSync
    decode: Callable[[Sequence[int]], str]
    stop_ids: tuple[int, ...]
    scorer: Any
    data: Any  # grain iterator of pivot batches
    schedule: Callable
    progress: Progress = dataclasses.field(default_factory=lambda: Progress())
    tokenizer: Any = None  # renders chat histories (end-to-end episodes)


def build_parts(
    cfg: GrpoConfig,
    mesh,
    engine,
    decode,
    stop_ids,
    scorer,
    data,
    initial_params: Params,
    model_config: ModelConfig,
) -> Parts:
    """Policy, optimizer state and reference on `mesh` from `initial_params` (pi_0)."""
    model_config = model_config.replace(param_dtype=cfg.optim.master_dtype)
    policy = make_policy(model_config, mesh)
    tx = make_optimizer(cfg.optim)
    schedule = make_schedule(cfg.optim)
    params = place_params(policy, initial_params, cfg.optim.dtype)
    reference = (
        create_reference(policy, initial_params, cfg.reference_dtype)
        if cfg.need_reference
        else None
    )
    state = create_train_state(policy, tx, params, cfg.seed)
    step = make_train_step(
        policy, tx, grpo_loss(cfg.loss), cfg.step, schedule, master_dtype=cfg.optim.dtype
    )
    return Parts(
        cfg,
        policy,
        state,
        reference,
        step,
        make_logprobs_fn(policy, cfg.step.micro_batches),
        engine,
        WEIGHT_SYNC.get(cfg.engine.name),
        decode,
        tuple(stop_ids),
        scorer,
        data,
        schedule,
    )


def next_pivots(data: Any, excluded: set[str], max_batches: int = 1000) -> list[dict]:
    """The next batch's pivots minus those re-profiling excluded (skipping emptied batches)."""
    for _ in range(max_batches):
        records = [r for r in next(data)["records"] if r.get("id") not in excluded]
        if records:
            return records
    raise RuntimeError(f"{max_batches} batches in a row hold only excluded pivots")


def _data_parallel(policy: Policy) -> int:
    return math.prod(policy.mesh.shape[a] for a in policy.rules.batch if a in policy.mesh.shape)


def sampling_params(parts: Parts, stream: str, it: int) -> SamplingParams:
    """The rollout sampling settings of iteration `it`, seeded by (seed, stream, it)."""
    r = parts.cfg.rollout
    return SamplingParams(
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        max_new_tokens=r.max_new_tokens,
        stop_token_ids=parts.stop_ids,
        seed=stable_seed(parts.cfg.seed, stream, it),
    )


def group_advantages(
    cfg: GrpoConfig, rewards: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rewards [P, G] -> (groups with variance > 0 [P], groups kept [P], advantages [P, G])."""
    nonzero = np.asarray(zero_variance_groups(jnp.asarray(rewards))[0])
    keep = nonzero if cfg.drop_zero_variance else np.ones(rewards.shape[0], bool)
    adv = flat_advantages(
        cfg.advantage,
        jnp.asarray(rewards.reshape(-1)),
        rewards.shape[1],
        eps=cfg.advantage_eps,
        ddof=cfg.advantage_ddof,
    )
    return nonzero, keep, np.asarray(adv).reshape(rewards.shape)


def iteration(parts: Parts, it: int, workdir: Path) -> tuple[dict[str, float], bool]:
    """One rollout batch and its update(s); returns (metrics, whether the weights changed)."""
    cfg, timer = parts.cfg, metrics_lib.StepTimer()
    G = cfg.rollout.group_size
    with timer("data"):
        records = next_pivots(parts.data, parts.progress.excluded)
        prompts = [[int(t) for t in r["prompt_ids"]] for r in records]
        if cfg.reprofile_enabled:
            parts.progress.recent.extend(_jsonable(r) for r in records)
    with timer("rollout"):
        groups = parts.engine.generate(prompts, sampling_params(parts, "train", it), G)
    with timer("verify"):
        rewards, errors = score_groups(
            records,
            groups,
            parts.decode,
            parts.scorer,
            cfg.verifier_for_all,
            cfg.verifier_time_limit_s,
        )
    nonzero, keep, adv = group_advantages(cfg, rewards)
    lengths = np.asarray([[len(c.token_ids) for c in g] for g in groups])
    truncated = np.asarray([[c.finish_reason == "length" for c in g] for g in groups])
    out = metrics_lib.rollout_metrics(rewards, nonzero, lengths, truncated, errors)
    seqs = group_sequences(prompts, groups, adv, keep)
    out["rollout/tokens"] = float(lengths.sum())
    out["rollout/tokens_per_s"] = float(lengths.sum()) / max(timer.seconds["rollout"], 1e-9)
    out["rollout/turns"] = float(lengths.size)
    return update_on(parts, seqs, it, workdir, timer, out, max_rows=cfg.pivots_per_step * G)


def update_on(
    parts: Parts,
    seqs: list[Seq],
    it: int,
    workdir: Path,
    timer: metrics_lib.StepTimer,
    out: dict[str, float],
    max_rows: int,
) -> tuple[dict[str, float], bool]:
    """Trainer sequences (advantages set) -> TrainBatch of at most `max_rows` rows -> old and
    reference logprobs -> update step(s) -> weight sync; metrics added to `out`."""
    cfg = parts.cfg
    if not seqs:  # every group had equal rewards: nothing to learn from this batch
        out["update/empty_batch"] = 1.0
        out.update(timer.split())
        return out, False

    with timer("reference"):
        host = make_batch(
            seqs,
            length_buckets=cfg.buckets(),
            row_multiple=cfg.step.micro_batches * _data_parallel(parts.policy),
            max_rows=max_rows,
            pack=cfg.pack,
        )
        batch: TrainBatch = place_batch(host, parts.policy)
        if cfg.old_logprobs == "recompute":
            batch = batch.replace(old_logprobs=parts.logprobs_fn(parts.state.params, batch))
        if parts.reference is not None:
            batch = batch.replace(ref_logprobs=parts.logprobs_fn(parts.reference.params, batch))
        jax.block_until_ready(batch)
    with timer("update"):
        for _ in range(cfg.updates_per_batch):
            parts.state, step_metrics = parts.train_step(parts.state, batch)
        step_metrics = metrics_lib.scalars(step_metrics)
    with timer("sync"):
        # Always: the step donated the arrays the in-process engine was holding.
        parts.sync(parts.engine, parts.policy, parts.state.params, it + 1, workdir, cfg.model_dir)
    out.update(step_metrics)
    tokens = float(np.sum(host.segment_ids > 0))
    out["update/tokens"] = tokens
    out["update/tokens_per_s"] = tokens * cfg.updates_per_batch / timer.seconds["update"]
    if cfg.peak_tflops > 0:
        T = host.input_ids.shape[1]
        flops = (
            tokens
            * cfg.updates_per_batch
            * metrics_lib.train_flops_per_token(parts.policy.config, T)
        )
        peak = cfg.peak_tflops * 1e12 * parts.policy.mesh.size
        out["update/mfu"] = flops / timer.seconds["update"] / peak
    out.update(timer.split())
    return out, True


def reprofile_recent(parts: Parts, it: int) -> dict[str, float]:
    """Re-profile the pivots of the low-std batches with the current weights (pivots.profile)
    and exclude those without GRPO signal any more (variance 0 or mean >= lambda_diff)."""
    from pivotrl_jax.pivots.profile import ProfileConfig, reprofile

    cfg, prog = parts.cfg, parts.progress
    r = cfg.rollout
    pcfg = ProfileConfig(
        k=r.group_size,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        max_new_tokens=r.max_new_tokens,
        candidates_per_call=cfg.pivots_per_step,
        seed=stable_seed(cfg.seed, "reprofile", it),
        verifier_time_limit_s=cfg.verifier_time_limit_s,
    )
    unique = list({rec["id"]: rec for rec in prog.recent}.values())
    _, keep = reprofile(
        unique,
        parts.engine,
        parts.decode,
        parts.scorer,
        pcfg,
        lambda_diff=cfg.reprofile_lambda_diff,
        round_index=prog.rounds,
    )
    dropped = {rec["id"] for rec, k in zip(unique, keep) if not k}
    prog.excluded |= dropped
    prog.rounds += 1
    prog.low_std, prog.recent = 0, []
    return {
        "reprofile/profiled": float(len(unique)),
        "reprofile/excluded": float(len(dropped)),
        "reprofile/excluded_total": float(len(prog.excluded)),
    }


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
        parts.state, meta = ckpt.restore(start, abstract)
        parts.data.set_state(meta["data_state"])
        parts.progress = Progress.from_json(meta["progress"])
        version = int(meta["weight_version"])
        if version:
            parts.sync(
                parts.engine, parts.policy, parts.state.params, version, workdir, cfg.model_dir
            )
    writer = metrics_lib.MetricsWriter(workdir, cfg.tensorboard, resume_step=start)
    first = 0 if start is None else start
    bar = tqdm(
        range(first, cfg.steps),
        initial=first,
        total=cfg.steps,
        disable=not cfg.progress,
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
                low = last["reward/std"] < cfg.reprofile_std_below
                parts.progress.low_std = parts.progress.low_std + 1 if low else 0
                if not low:
                    parts.progress.recent = []
                if parts.progress.low_std >= cfg.reprofile_patience:
                    last.update(reprofile_recent(parts, it))
            writer.write(it + 1, last)
            faults.point("train.metrics_written")
            bar.set_postfix(reward=f"{last['reward/mean']:.3f}", loss=f"{last.get('loss', 0):.4f}")
            if int(parts.state.nonfinite) > cfg.max_nonfinite:
                raise TrainingDiverged(
                    f"{int(parts.state.nonfinite)} non-finite updates (limit {cfg.max_nonfinite})"
                    f" by iteration {it + 1}; the last checkpoint is step {ckpt.latest_step()}"
                )
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.steps:
                meta = {
                    "data_state": parts.data.get_state(),
                    "weight_version": version,
                    "iteration": it + 1,
                    "progress": parts.progress.to_json(),
                }
                ckpt.save(it + 1, parts.state, meta)
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
