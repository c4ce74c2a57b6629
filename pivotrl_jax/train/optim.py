"""The policy optimizer: gradient clipping, then AdamW on a learning-rate schedule.

    g   <- g · min(1, clip / ||g||_2)                       (global norm; off when clip = 0)
    m   <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g²
    p   <- p - lr(t) · (m̂ / (sqrt(v̂) + eps) + wd · p)

Schedules live in `SCHEDULES`, one pure function of the config per name. The defaults are the
PivotRL recipe (REFERENCE §1): constant lr 1e-6, Adam (0.9, 0.999), weight decay 0, clip 1.0,
MoE router frozen. A frozen parameter (`frozen_labels`) is left out of the clip norm and of Adam:
it gets no update and no optimizer state (the model also stops its gradient:
`ModelConfig.router_trainable`).

>>> schedule = make_schedule(OptimConfig(learning_rate=1.0, schedule="warmup_cosine",
...                                        warmup_steps=10, decay_steps=110))
>>> float(schedule(5)), float(schedule(10)), float(schedule(110))
(0.5, 1.0, 0.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from pivotrl_jax.models.config import DTYPES, ModelConfig
from pivotrl_jax.registry import Registry

Schedule = Callable[..., optax.Schedule]
SCHEDULES: Registry[Callable[[OptimConfig], optax.Schedule]] = Registry("lr schedule")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-6  # peak learning rate
    schedule: str = "constant"  # a SCHEDULES name
    warmup_steps: int = 0  # linear warm-up from 0 (warmup_* schedules)
    decay_steps: int = 0  # total steps of warm-up + cosine decay (warmup_cosine)
    min_lr_ratio: float = 0.0  # final lr / peak lr of the cosine
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # global-norm clip; 0 disables
    master_dtype: str = "float32"  # dtype the policy parameters (and Adam moments) are kept in
    freeze_router: bool = True  # MoE routers W_r: no gradient, no update, no optimizer state

    def __post_init__(self):
        SCHEDULES.get(self.schedule)
        if self.learning_rate < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError(f"learning_rate, grad_clip and weight_decay must be >= 0: {self}")
        if self.master_dtype not in DTYPES:
            raise ValueError(f"master_dtype {self.master_dtype!r} is not one of {sorted(DTYPES)}")
        if self.schedule == "warmup_cosine" and self.decay_steps <= self.warmup_steps:
            raise ValueError(
                f"warmup_cosine needs decay_steps > warmup_steps, got {self.decay_steps} "
                f"<= {self.warmup_steps}"
            )

    @property
    def dtype(self) -> jnp.dtype:
        return DTYPES[self.master_dtype]


@SCHEDULES.register("constant")
def constant(cfg: OptimConfig) -> optax.Schedule:
    """lr(t) = lr."""
    return optax.constant_schedule(cfg.learning_rate)


@SCHEDULES.register("warmup_constant")
def warmup_constant(cfg: OptimConfig) -> optax.Schedule:
    """lr(t) = lr · min(1, t / warmup)."""
    if cfg.warmup_steps == 0:
        return optax.constant_schedule(cfg.learning_rate)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
            optax.constant_schedule(cfg.learning_rate),
        ],
        [cfg.warmup_steps],
    )


@SCHEDULES.register("warmup_cosine")
def warmup_cosine(cfg: OptimConfig) -> optax.Schedule:
    """Linear warm-up to lr over `warmup_steps`, then cosine to lr · min_lr_ratio at
    `decay_steps` (counted from step 0, warm-up included)."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.decay_steps,
        end_value=cfg.learning_rate * cfg.min_lr_ratio,
    )


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
    return SCHEDULES.get(cfg.schedule)(cfg)


def policy_config(model: ModelConfig, cfg: OptimConfig) -> ModelConfig:
    """The model config the trained policy runs with: parameters in the master dtype, and no
    gradient into frozen routers."""
    return model.replace(param_dtype=cfg.master_dtype, router_trainable=not cfg.freeze_router)


def frozen_labels(cfg: OptimConfig) -> Callable[[Any], Any]:
    """params -> the same tree of "frozen" / "trained" labels (a router is a leaf named
    `router`)."""

    def label(path, _):
        frozen = cfg.freeze_router and any(getattr(k, "key", None) == "router" for k in path)
        return "frozen" if frozen else "trained"

    return lambda params: jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """clip_by_global_norm (when grad_clip > 0) followed by AdamW on the schedule, over the
    parameters that are not frozen; frozen ones get zero updates and keep no state."""
    adam = optax.adamw(
        make_schedule(cfg),
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
    clip = optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0 else optax.identity()
    trained = optax.chain(clip, adam)
    return optax.multi_transform(
        {"trained": trained, "frozen": optax.set_to_zero()}, frozen_labels(cfg)
    )
