"""The GRPO policy objective on pivot states: clipped policy losses, truncated IS, KL to pi_0.

Per token t of row b (a sampled action a_t), with logprobs from the trainer's current
parameters, old_logprobs from the parameters that the rollout batch is optimised against
(detached; equal to logprobs when fully on-policy) and behaviour_logprobs from the rollout
engine:

    ratio       r = exp(logprobs - old_logprobs)
    policy      l = policy_loss(r, A)                     (POLICY_LOSSES: ppo, gspo)
    TIS         w = sg(min(exp(old_logprobs - behaviour_logprobs), cap))
    KL          k = kl_estimator(logprobs, ref_logprobs)  (KL_ESTIMATORS: k3 by default)
    entropy     h = per-token entropy of the current policy

    loss = agg(w·l) + beta · agg(k) - entropy_coef · agg(h)

where agg is one of AGGREGATIONS and every term shares its count, so the whole loss is one
summable (sum, count) pair (see aggregation.py for why). The TIS weight corrects for the
rollout engine sampling from a slightly different distribution (bf16 kernels, another
framework) than the trainer's pi_old; it multiplies the policy term only.

Defaults follow the public PivotRL recipes (REFERENCE §1): PPO clip 0.2/0.2 (0.2/0.28 for
SWE), token-mean, TIS cap 5, beta = 0 (k3 when beta > 0), no entropy bonus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

from pivotrl_jax.registry import Registry
from pivotrl_jax.train.aggregation import (
    AGGREGATIONS,
    LossParts,
    aggregate,
    as_float,
    per_sequence_sum,
    per_token,
)
from pivotrl_jax.train.kl import KL_ESTIMATORS, KL_REFUSED_AS_LOSS, kl_estimate
from pivotrl_jax.train.routing import METRIC_REDUCTIONS as ROUTER_METRIC_REDUCTIONS

Array = jax.Array

# verl's clamp on log(pi/pi_old) before exp in PPO, and on GSPO's sequence log-ratio.
PPO_LOG_RATIO_BOUND = 20.0
GSPO_LOG_RATIO_MAX = 10.0
# Bound on the rollout/trainer log-ratio before exp in the TIS weight (verl's SAFETY_BOUND).
TIS_LOG_RATIO_BOUND = 20.0


class PolicyTerms(NamedTuple):
    """Per-token output of a policy loss; padding positions hold garbage, mask them."""

    loss: Array  # [B, T] float
    ratio: Array  # [B, T] the importance ratio the loss clips
    clipped_low: Array  # [B, T] bool: A < 0 and ratio < 1 - clip_low (no gradient)
    clipped_high: Array  # [B, T] bool: A > 0 and ratio > 1 + clip_high (no gradient)
    clipped_dual: Array  # [B, T] bool: A < 0 and the dual-clip bound -A·c is the loss


class PolicyLoss(Protocol):
    def __call__(
        self,
        logprobs: Array,
        old_logprobs: Array,
        advantages: Array,
        mask: Array,
        *,
        clip_low: float,
        clip_high: float,
        clip_c: float | None,
        segment_ids: Array | None = None,
    ) -> PolicyTerms: ...


POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")


def _token_advantages(advantages: Array, shape: tuple[int, ...]) -> Array:
    """[B] or [B, T] -> [B, T], float32 (or wider), no gradient."""
    a = jax.lax.stop_gradient(as_float(advantages))
    return jnp.broadcast_to(a[:, None] if a.ndim == 1 else a, shape)


def _clipped_surrogate(ratio: Array, a: Array, clip_low: float, clip_high: float):
    """max(-A·r, -A·clip(r, 1-clip_low, 1+clip_high)) and its clip indicators."""
    unclipped = -a * ratio
    clipped = -a * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = jnp.maximum(unclipped, clipped)
    active = clipped > unclipped  # the clipped branch is the max: no gradient
    return loss, active & (a < 0), active & (a > 0)


@POLICY_LOSSES.register("ppo")
def ppo(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B] or [B, T]
    mask: Array,  # [B, T] (unused: token-local)
    *,
    clip_low: float,
    clip_high: float,
    clip_c: float | None,
    segment_ids: Array | None = None,  # unused: token-local
) -> PolicyTerms:
    """PPO clip with decoupled bounds (DAPO's clip-higher) and optional dual clip.

    r = exp(clip(logprobs - old_logprobs, ±20))
    l = max(-A·r, -A·clip(r, 1 - clip_low, 1 + clip_high))
    dual clip (arXiv 1912.09729), when clip_c is set: l = min(l, -A·c) for A < 0, which
    bounds the loss of a negative-advantage token whose ratio has run far above 1.
    """
    del mask, segment_ids
    lp, old = as_float(logprobs), as_float(old_logprobs)  # float32 (or wider)
    a = _token_advantages(advantages, lp.shape)
    ratio = jnp.exp(jnp.clip(lp - old, -PPO_LOG_RATIO_BOUND, PPO_LOG_RATIO_BOUND))
    loss, low, high = _clipped_surrogate(ratio, a, clip_low, clip_high)
    dual = jnp.zeros_like(low)
    if clip_c is not None:
        bound = -a * clip_c
        dual = (a < 0) & (loss > bound)
        loss = jnp.where(a < 0, jnp.minimum(loss, bound), loss)
    return PolicyTerms(loss, ratio, low, high, dual)


@POLICY_LOSSES.register("gspo")
def gspo(
    logprobs: Array,  # [B, T]
    old_logprobs: Array,  # [B, T]
    advantages: Array,  # [B] or [B, T]
    mask: Array,  # [B, T]
    *,
    clip_low: float,
    clip_high: float,
    clip_c: float | None,  # must be None: GSPO has no dual clip
    segment_ids: Array | None = None,  # [B, T] for packed rows: one ratio per segment
) -> PolicyTerms:
    """GSPO (arXiv 2507.18071): one ratio per sequence, the geometric mean of its token ratios.

    s_b = exp((1/n_b) Σ_t m_bt (logprobs - old_logprobs)_bt)
    token form s_bt = sg(s_b) · pi(a_t) / sg(pi(a_t)): its value is s_b and its gradient
    s_b · grad log pi(a_t), so each token carries the sequence's clipped ratio.
    l = max(-A·s, -A·clip(s, 1 - clip_low, 1 + clip_high)); log s is capped at 10.
    """
    if clip_c is not None:
        raise ValueError("gspo has no dual clip; set clip_c=None")
    lp, old = as_float(logprobs), as_float(old_logprobs)  # float32 (or wider)
    m = as_float(mask)
    a = _token_advantages(advantages, lp.shape)
    n = jnp.maximum(per_sequence_sum(m, segment_ids), 1.0)  # [N] sequences
    seq_log_ratio = per_sequence_sum((lp - old) * m, segment_ids) / n  # [N]
    token_log_ratio = per_token(seq_log_ratio, segment_ids, lp.shape)  # [B, T]
    log_s = lp - jax.lax.stop_gradient(lp) + jax.lax.stop_gradient(token_log_ratio)
    ratio = jnp.exp(jnp.minimum(log_s, GSPO_LOG_RATIO_MAX))  # [B, T]
    loss, low, high = _clipped_surrogate(ratio, a, clip_low, clip_high)
    return PolicyTerms(loss, ratio, low, high, jnp.zeros_like(low))


def truncated_is_weights(
    old_logprobs: Array,  # [B, T] trainer's log pi_old(a_t)
    behaviour_logprobs: Array,  # [B, T] rollout engine's log mu(a_t)
    cap: float,
) -> tuple[Array, Array]:  # weights [B, T], truncated [B, T] bool
    """w = sg(min(exp(old_logprobs - behaviour_logprobs), cap)); the log-ratio is clipped to ±20.

    Token-level truncated importance sampling (TIS): corrects the policy gradient for the
    rollout engine's mu differing from the trainer's pi_old, trading a little bias for
    bounded variance.
    """
    log_w = as_float(old_logprobs) - as_float(behaviour_logprobs)  # float32 (or wider)
    raw = jnp.exp(jnp.clip(log_w, -TIS_LOG_RATIO_BOUND, TIS_LOG_RATIO_BOUND))
    return jax.lax.stop_gradient(jnp.minimum(raw, cap)), raw > cap


def token_entropy(
    logits: Array,  # [B, T, V]
) -> Array:  # [B, T]
    """H = logsumexp(z) - Σ_v softmax(z)_v z_v, computed in float32."""
    z = as_float(logits)  # softmax in float32 (or wider)
    return jax.nn.logsumexp(z, axis=-1) - jnp.sum(jax.nn.softmax(z, axis=-1) * z, axis=-1)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Knobs of `grpo_objective`; defaults are the PivotRL tool-use recipe."""

    policy_loss: str = "ppo"  # a POLICY_LOSSES name
    clip_low: float = 0.2  # ratio lower bound 1 - clip_low (A < 0)
    clip_high: float = 0.2  # ratio upper bound 1 + clip_high (A > 0); 0.28 for SWE
    clip_c: float | None = None  # dual-clip bound c > 1 for A < 0 (verl uses 3.0); None: off
    aggregation: str = "token-mean"  # an AGGREGATIONS name
    horizon: int | None = None  # Dr.GRPO's constant H for seq-mean-token-sum-norm
    tis_cap: float | None = 5.0  # truncated-IS cap against behaviour logprobs; None: off
    beta: float = 0.0  # KL(pi_theta || pi_0) coefficient; 0 runs without a reference
    kl_estimator: str = "k3"  # a KL_ESTIMATORS name; k1 is refused as a loss
    entropy_coef: float = 0.0  # entropy bonus coefficient (subtracted from the loss)

    def __post_init__(self):
        POLICY_LOSSES.get(self.policy_loss)
        KL_ESTIMATORS.get(self.kl_estimator)
        # A dry run checks the aggregation's own requirements (Dr.GRPO's horizon).
        one = jnp.ones((1, 1))
        AGGREGATIONS.get(self.aggregation)(one, one, horizon=self.horizon)
        if not 0.0 < self.clip_low < 1.0 or self.clip_high <= 0.0:
            raise ValueError(f"need 0 < clip_low < 1 and clip_high > 0, got {self}")
        if self.clip_c is not None and self.clip_c <= 1.0:
            raise ValueError(f"dual-clip bound clip_c must be > 1, got {self.clip_c}")
        if self.tis_cap is not None and self.tis_cap <= 0.0:
            raise ValueError(f"tis_cap must be > 0, got {self.tis_cap}")
        if self.beta < 0.0 or self.entropy_coef < 0.0:
            raise ValueError(f"beta and entropy_coef must be >= 0, got {self}")
        if self.beta > 0.0 and self.kl_estimator in KL_REFUSED_AS_LOSS:
            raise ValueError(
                f"{self.kl_estimator} has zero expected gradient as a loss (the reference drops "
                "out); use k3, k3+ or k2 when beta > 0"
            )


# How each metric combines across micro-batches (see `merge_metrics`).
METRIC_REDUCTIONS: Mapping[str, str] = {
    "tokens": "sum",
    "loss/count": "sum",
    "loss/policy_sum": "sum",
    "loss/kl_sum": "sum",
    "loss/entropy_sum": "sum",
    "clip/low_fraction": "token_mean",
    "clip/high_fraction": "token_mean",
    "clip/dual_fraction": "token_mean",
    "ratio/mean": "token_mean",
    "ratio/min": "min",
    "ratio/max": "max",
    "kl/mean": "token_mean",
    "entropy/mean": "token_mean",
    "tis/truncated_fraction": "token_mean",
    "tis/weight_mean": "token_mean",
    "mismatch/mean_abs": "token_mean",
    "mismatch/max_abs": "max",
    **ROUTER_METRIC_REDUCTIONS,
}


def grpo_objective(
    cfg: LossConfig,
    logprobs: Array,  # [B, T] log pi_theta(a_t), differentiable
    old_logprobs: Array,  # [B, T] log pi_old(a_t), detached by the caller
    advantages: Array,  # [B] or [B, T]
    mask: Array,  # [B, T] 1 on response tokens that enter the loss
    *,
    ref_logprobs: Array | None = None,  # [B, T] log pi_0(a_t); needed when beta > 0
    behaviour_logprobs: Array | None = None,  # [B, T] rollout engine's log mu(a_t)
    entropy: Array | None = None,  # [B, T] per-token entropy (token_entropy(logits))
    segment_ids: Array | None = None,  # [B, T] packed rows: 0 padding, 1.. sequence in row
) -> tuple[LossParts, dict[str, Array]]:
    """The loss as one (sum, count) pair, and metrics; see the module docstring.

    Pass `segment_ids` when rows are packed (several sequences per row): sequence-level
    aggregation and GSPO's ratio then work per sequence, so a packed batch gives the same
    loss as the same sequences one per row.

    Metrics are per call (one micro-batch); `merge_metrics` combines calls exactly. KL and
    entropy metrics appear when their inputs are given (KL drift is worth logging at
    beta = 0 too); TIS and mismatch metrics when behaviour_logprobs is given.
    """
    if cfg.beta > 0.0 and ref_logprobs is None:
        raise ValueError("beta > 0 needs ref_logprobs")
    if cfg.entropy_coef > 0.0 and entropy is None:
        raise ValueError("entropy_coef > 0 needs per-token entropy")
    m = as_float(mask)  # float32 (or wider) throughout
    valid = m > 0

    def clean(x):  # padding may hold anything (-inf, NaN); where() keeps its gradient exactly 0
        return None if x is None else jnp.where(valid, as_float(x), 0.0)

    logprobs, old_logprobs, ref_logprobs, behaviour_logprobs, entropy = map(
        clean, (logprobs, old_logprobs, ref_logprobs, behaviour_logprobs, entropy)
    )
    if advantages.ndim == 2:
        advantages = clean(advantages)
    terms = POLICY_LOSSES.get(cfg.policy_loss)(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        clip_low=cfg.clip_low,
        clip_high=cfg.clip_high,
        clip_c=cfg.clip_c,
        segment_ids=segment_ids,
    )
    n_tok = jnp.sum(m)

    def token_mean(x):
        return jnp.sum(as_float(x) * m) / jnp.maximum(n_tok, 1.0)

    metrics = {
        "tokens": n_tok,
        "clip/low_fraction": token_mean(terms.clipped_low),
        "clip/high_fraction": token_mean(terms.clipped_high),
        "clip/dual_fraction": token_mean(terms.clipped_dual),
        "ratio/mean": token_mean(terms.ratio),
        "ratio/min": jnp.min(jnp.where(valid, terms.ratio, jnp.inf)),
        "ratio/max": jnp.max(jnp.where(valid, terms.ratio, -jnp.inf)),
    }

    policy_loss = terms.loss
    if behaviour_logprobs is not None:
        gap = jnp.abs(as_float(old_logprobs) - as_float(behaviour_logprobs))
        metrics["mismatch/mean_abs"] = token_mean(gap)
        metrics["mismatch/max_abs"] = jnp.max(jnp.where(valid, gap, 0.0))
        if cfg.tis_cap is not None:
            w, truncated = truncated_is_weights(old_logprobs, behaviour_logprobs, cfg.tis_cap)
            policy_loss = policy_loss * w
            metrics["tis/truncated_fraction"] = token_mean(truncated)
            metrics["tis/weight_mean"] = token_mean(w)

    parts = aggregate(cfg.aggregation, policy_loss, m, horizon=cfg.horizon, segment_ids=segment_ids)
    metrics["loss/policy_sum"] = jax.lax.stop_gradient(parts.sum)
    total = parts.sum

    if ref_logprobs is not None:
        kl = kl_estimate(cfg.kl_estimator, logprobs, ref_logprobs)
        kl_parts = aggregate(cfg.aggregation, kl, m, horizon=cfg.horizon, segment_ids=segment_ids)
        metrics["kl/mean"] = jax.lax.stop_gradient(token_mean(kl))
        metrics["loss/kl_sum"] = jax.lax.stop_gradient(kl_parts.sum)
        if cfg.beta > 0.0:
            total = total + cfg.beta * kl_parts.sum

    if entropy is not None:
        ent_parts = aggregate(
            cfg.aggregation, entropy, m, horizon=cfg.horizon, segment_ids=segment_ids
        )
        metrics["entropy/mean"] = jax.lax.stop_gradient(token_mean(entropy))
        metrics["loss/entropy_sum"] = jax.lax.stop_gradient(ent_parts.sum)
        if cfg.entropy_coef > 0.0:
            total = total - cfg.entropy_coef * ent_parts.sum

    metrics["loss/count"] = parts.count
    return LossParts(total, parts.count), {k: jax.lax.stop_gradient(v) for k, v in metrics.items()}


def merge_metrics(per_call: Sequence[Mapping[str, Array]]) -> dict[str, Array]:
    """Combine the metrics of micro-batches into the full batch's, exactly.

    Sums add, token means are re-weighted by each call's token count, min/max reduce.
    """
    tokens = [mt["tokens"] for mt in per_call]
    total_tokens = sum(tokens)
    out = {}
    for key in per_call[0]:
        values = [mt[key] for mt in per_call]
        how = METRIC_REDUCTIONS[key]
        if how == "sum":
            out[key] = sum(values)
        elif how == "token_mean":
            out[key] = sum(v * n for v, n in zip(values, tokens)) / jnp.maximum(total_tokens, 1.0)
        elif how == "min":
            out[key] = jnp.min(jnp.stack(values))
        else:
            out[key] = jnp.max(jnp.stack(values))
    return out
