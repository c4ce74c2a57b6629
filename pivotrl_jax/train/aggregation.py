"""Loss aggregation: per-token values [B, T] -> a (sum, count) pair.

A registered mode maps per-token values and a mask to `LossParts(sum, count)` with
loss = sum / count. The count depends only on the mask (never on parameters), and both
sum and count add over rows, so for any split of the batch into micro-batches k:

    loss(full batch) = (sum_k sum_k) / (sum_k count_k)                      (exact)
    grad loss(full batch) = (sum_k grad sum_k) / (sum_k count_k)

A trainer that accumulates gradients computes the global count first (it needs only the
masks) and divides each micro-batch's sum by it. The per-mode mean of per-micro-batch
losses, which some trainers use, is *not* the full-batch loss when micro-batches hold
different numbers of tokens; returning (sum, count) makes that mistake impossible.

Modes (names follow verl's `loss_agg_mode`):

    token-mean               sum = Σ_b Σ_t m_bt l_bt            count = Σ_b Σ_t m_bt
    seq-mean-token-mean      sum = Σ_b (Σ_t m_bt l_bt) / n_b    count = #{b : n_b > 0}
    seq-mean-token-sum-norm  sum = Σ_b Σ_t m_bt l_bt            count = #{b : n_b > 0} · H

with n_b = Σ_t m_bt. A "sequence" b is a row, or, for packed rows (several sequences per
row, told apart by `segment_ids`, 0 = padding), one segment of a row: a packed batch gives
the same (sum, count) as the same sequences one per row.

The last mode is Dr.GRPO (arXiv 2503.20783): a sequence's token sum divided by a constant
horizon H (the maximum response length), so that neither the sequence's own length nor the
padded width of a micro-batch rescales its gradient. Sequences with no valid token
contribute 0 to both sum and count.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

from pivotrl_jax.registry import Registry

Array = jax.Array


class LossParts(NamedTuple):
    """A loss as a summable pair; the loss is `sum / count`."""

    sum: Array  # [] float
    count: Array  # [] float


class Aggregation(Protocol):
    def __call__(
        self, values: Array, mask: Array, *, horizon: int | None, segment_ids: Array | None = None
    ) -> LossParts: ...


AGGREGATIONS: Registry[Aggregation] = Registry("loss aggregation")


def as_float(x: Array) -> Array:
    """Promote to at least float32: bf16/f16 inputs are never summed in low precision."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _masked(values: Array, mask: Array) -> Array:
    """values · mask, with padding values (possibly inf/NaN) replaced by 0 first."""
    return jnp.where(mask != 0, values, 0.0) * mask


def per_sequence_sum(
    x: Array,  # [B, T]
    segment_ids: Array | None = None,  # [B, T] int, 0 = padding, 1.. = sequence in the row
) -> Array:  # [N]: N = B (one sequence per row) or B·(T+1) (packed; unused slots are 0)
    """Σ_t x over each sequence: a row, or each (row, segment) of packed rows."""
    if segment_ids is None:
        return jnp.sum(x, axis=-1)
    b, t = x.shape
    ids = jnp.arange(b)[:, None] * (t + 1) + segment_ids  # [B, T] unique per (row, segment)
    return jax.ops.segment_sum(x.reshape(-1), ids.reshape(-1), num_segments=b * (t + 1))


def per_token(
    seq: Array,  # [N] from per_sequence_sum
    segment_ids: Array | None,  # [B, T] or None
    shape: tuple[int, int],  # (B, T)
) -> Array:  # [B, T]: each token's sequence value
    """Broadcast per-sequence values back onto their tokens (inverse layout of per_sequence_sum)."""
    if segment_ids is None:
        return jnp.broadcast_to(seq[:, None], shape)
    b, t = shape
    return seq[jnp.arange(b)[:, None] * (t + 1) + segment_ids]


@AGGREGATIONS.register("token-mean")
def token_mean(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    horizon: int | None = None,  # unused: the count is the number of valid tokens
    segment_ids: Array | None = None,  # unused: packing does not change a token mean
) -> LossParts:
    """Every valid token weighs the same: Σ m·l / Σ m (DAPO, PivotRL's token-level loss)."""
    del horizon, segment_ids
    values, mask = as_float(values), as_float(mask)  # float32 (or wider) sums
    return LossParts(jnp.sum(_masked(values, mask)), jnp.sum(mask))


@AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    horizon: int | None = None,  # unused: the count is the number of non-empty sequences
    segment_ids: Array | None = None,  # [B, T] for packed rows
) -> LossParts:
    """Each sequence's token mean, averaged over sequences (the original GRPO)."""
    del horizon
    values, mask = as_float(values), as_float(mask)  # float32 (or wider) sums
    n = per_sequence_sum(mask, segment_ids)  # [N]
    seq = per_sequence_sum(_masked(values, mask), segment_ids) / jnp.maximum(n, 1.0)  # [N]
    return LossParts(jnp.sum(seq), jnp.sum((n > 0).astype(values.dtype)))


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    horizon: int | None,  # the constant H (maximum response length); required
    segment_ids: Array | None = None,  # [B, T] for packed rows
) -> LossParts:
    """Dr.GRPO: Σ_b Σ_t m·l / (#sequences · H) with a constant horizon H."""
    if horizon is None or horizon <= 0:
        raise ValueError(f"seq-mean-token-sum-norm needs a constant horizon > 0, got {horizon}")
    values, mask = as_float(values), as_float(mask)  # float32 (or wider) sums
    sequences = jnp.sum((per_sequence_sum(mask, segment_ids) > 0).astype(values.dtype))
    return LossParts(jnp.sum(_masked(values, mask)), sequences * horizon)


def aggregate(
    mode: str,
    values: Array,  # [B, T]
    mask: Array,  # [B, T]
    *,
    horizon: int | None = None,
    segment_ids: Array | None = None,  # [B, T] for packed rows
) -> LossParts:
    """Look up `mode` in AGGREGATIONS and apply it."""
    return AGGREGATIONS.get(mode)(values, mask, horizon=horizon, segment_ids=segment_ids)


def combine(parts: list[LossParts] | tuple[LossParts, ...]) -> LossParts:
    """Add the (sum, count) pairs of micro-batches: the full batch's pair."""
    return LossParts(sum(p.sum for p in parts), sum(p.count for p in parts))


def loss_value(parts: LossParts) -> Array:
    """sum / count, and 0 for a batch with nothing to average (count == 0)."""
    count = parts.count
    return jnp.where(count > 0, parts.sum / jnp.where(count > 0, count, 1.0), 0.0)
