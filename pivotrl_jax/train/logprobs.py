"""Per-token log-probabilities from logits, and next-token logprobs of sequences from a model.

    log p(y_t) = z_t[y_t] - logsumexp_v z_t[v]          (float32)

Aligned to the *predicting* position t: the logprob at t is that of token t + 1 of the same
segment (see train/batching.py); positions with no such token get 0 and `valid` False.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def token_logprobs(logits: Array, targets: Array) -> Array:
    """log_softmax(logits)[targets] in float32.

    Args:
      logits: [B, T, V]; targets: [B, T] int.
    Returns:
      [B, T] float32.
    """
    # Softmax statistics in float32, whatever the logits' dtype.
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def next_token_targets(input_ids: Array, segment_ids: Array) -> tuple[Array, Array]:
    """targets[b, t] = input_ids[b, t + 1] and valid[b, t] = whether token t + 1 continues the
    segment of token t (a real token of the same sequence). Both [B, T]; targets 0 where invalid.
    """
    nxt_ids = jnp.concatenate([input_ids[:, 1:], jnp.zeros_like(input_ids[:, :1])], axis=1)
    nxt_seg = jnp.concatenate([segment_ids[:, 1:], jnp.zeros_like(segment_ids[:, :1])], axis=1)
    valid = (segment_ids != 0) & (nxt_seg == segment_ids)
    return jnp.where(valid, nxt_ids, 0), valid


def sequence_logprobs(
    logits_fn: Callable[[Array, Array, Array], Array],
    input_ids: Array,  # [B, T]
    positions: Array,  # [B, T]
    segment_ids: Array,  # [B, T]; 0 = padding
) -> tuple[Array, Array]:
    """Next-token logprobs [B, T] f32 (0 where `valid` is False) and `valid` [B, T] bool.

    `logits_fn(input_ids, positions, segment_ids) -> [B, T, V]`, e.g.
    `functools.partial(models.forward, graphdef, params)` or `lambda *a: model(*a)[0]`.
    """
    logits = logits_fn(input_ids, positions, segment_ids)
    targets, valid = next_token_targets(input_ids, segment_ids)
    return jnp.where(valid, token_logprobs(logits, targets), 0.0), valid
