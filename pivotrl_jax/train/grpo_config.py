"""What a GRPO run is configured with: `GrpoConfig`, where the command's ConfigDict stops.

`grpo_config(cfg)` converts `configs/train.py`'s ConfigDict and validates it once; nothing
below it sees a ConfigDict.

pi_old, the policy the clipped ratio is taken against (`old_logprobs`):
    "current"    the step's own log-probs, detached: with one update per rollout batch the
                 parameters being differentiated are pi_old, so this is the recomputed pi_old
                 at no extra forward pass;
    "recompute"  a forward pass with the pre-update parameters before the update(s) (needed
                 when one rollout batch feeds several updates);
    "engine"     the rollout engine's log-probs;
    "auto"       "current" with one update per batch, else "recompute".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from pivotrl_jax.rollout.factory import EngineSpec
from pivotrl_jax.train.advantages import ADVANTAGES
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig
from pivotrl_jax.train.step import StepConfig

OLD_LOGPROBS = ("auto", "current", "recompute", "engine")


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
    share_prefix: bool = True  # a group's prompt once per row, its G responses after it
    # Rows rounded up to the multiple x {1, 2, 3, 4, 6, 8, ...} (2 buckets per octave; 1: powers
    # of two; 0: to the multiple only): a bounded number of step compilations.
    row_buckets_per_octave: int = 2
    compile_rows: tuple[int, ...] = ()  # row counts compiled before the first step (update.py)
    old_logprobs: str = "auto"
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
    score_truncated: bool = False  # False: a completion cut at max_new_tokens earns 0
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
        if self.row_buckets_per_octave < 0:
            raise ValueError(
                f"row_buckets_per_octave must be >= 0, got {self.row_buckets_per_octave}"
            )
        if self.compile_rows and len(self.length_buckets) != 1:
            raise ValueError(
                "train.compile_rows needs one row length (train.length_buckets), got "
                f"{self.length_buckets or 'the automatic lengths'}"
            )
        if self.rollout.group_size < 2:
            raise ValueError("GRPO needs group_size >= 2")
        if self.updates_per_batch > 1 and self.old_logprobs in ("current", "engine"):
            raise ValueError(
                f"updates_per_batch > 1 needs old_logprobs 'recompute' or 'auto', not "
                f"{self.old_logprobs!r} (pi_old is the pre-update policy)"
            )

    @property
    def pi_old(self) -> str:
        """The resolved old_logprobs mode: current, recompute or engine."""
        if self.old_logprobs == "auto":
            return "current" if self.updates_per_batch == 1 else "recompute"
        return self.old_logprobs

    @property
    def need_reference(self) -> bool:
        return self.loss.beta > 0 or self.kl_metric

    def buckets(self) -> tuple[int, ...]:
        """Row lengths: the configured ones, else 2^k and 3·2^(k-1) from 64 up to what the
        longest row holds (a whole group when prefixes are shared); at most 1/3 padding."""
        if self.length_buckets:
            return tuple(sorted(self.length_buckets))
        new = self.rollout.max_new_tokens
        if self.share_prefix:
            top = self.max_prompt_len + self.rollout.group_size * (1 + new)
        else:
            top = self.max_prompt_len + new
        out = []
        for k in range(6, math.ceil(math.log2(max(top, 64))) + 1):
            out += [3 << (k - 2), 1 << k] if k > 6 else [1 << k]
        fits = min(b for b in out if b >= top)
        return tuple(b for b in sorted(out) if b <= fits)


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
        share_prefix=t.share_prefix,
        row_buckets_per_octave=t.row_buckets_per_octave,
        compile_rows=tuple(t.compile_rows),
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
        score_truncated=cfg.score_truncated,
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
        step=StepConfig(
            micro_batches=t.micro_batches,
            entropy_metric=t.entropy_metric,
            entropy_grad=cfg.loss.entropy_coef > 0,
            logits_chunk_bytes=int(t.logits_chunk_mb * 2**20),
            router_aux_coef=t.router_aux_coef,
        ),
        engine=EngineSpec.from_mapping(cfg.engine.to_dict()),
    )
