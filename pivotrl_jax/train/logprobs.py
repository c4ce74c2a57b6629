"""Per-token log-probabilities from logits, and next-token logprobs of sequences from a model.

    log p(y_t) = z_t[y_t] - logsumexp_v z_t[v]          (float32)
    H_t        = logsumexp_v z_t[v] - Σ_v softmax(z_t)_v z_t[v]

Aligned to the *predicting* position t: the logprob at t is that of token t + 1 of the same
segment (see train/batching.py); positions with no such token get 0 and `valid` False.

The trainer never holds the [B, T, V] logits: `chunked_logprobs` takes the final hidden states
and the output head and computes z = h W a chunk of tokens at a time, keeping only the [B, T]
results; the backward pass recomputes each chunk's logits instead of storing them.
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


def chunk_tokens(vocab_size: int, budget_bytes: int) -> int:
    """Tokens per chunk so one chunk's float32 logits [C, V] fit in `budget_bytes` (C >= 8)."""
    return max(8, budget_bytes // (4 * vocab_size) // 8 * 8)


def chunked_logprobs(
    hidden: Array,  # [B, T, D] final hidden states (after the last norm)
    head: Array,  # [D, V] output projection
    targets: Array,  # [B, T] int
    *,
    chunk: int,  # C tokens per chunk
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Array, Array | None]:
    """(log pi(targets) [B, T], entropy [B, T] or None), float32, from `chunk` tokens at a time.

    Equal to `token_logprobs(hidden @ head, targets)` (and `losses.token_entropy`), but only one
    chunk's [C, V] float32 logits is ever live: each chunk is rematerialised in the backward
    pass, so the saved state is the hidden states. The entropy has no gradient unless
    `entropy_grad` (an entropy bonus in the loss).
    """
    B, T, D = hidden.shape
    N = B * T
    C = min(chunk, N)
    n = -(-N // C)
    h = jnp.pad(hidden.reshape(N, D), ((0, n * C - N), (0, 0))).reshape(n, C, D)
    y = jnp.pad(targets.reshape(N).astype(jnp.int32), (0, n * C - N)).reshape(n, C)

    @jax.checkpoint
    def one(hy):
        h, y = hy
        # Logits accumulate in float32; the softmax statistics stay in float32.
        z = jnp.einsum("CD,DV->CV", h, head, preferred_element_type=jnp.float32)
        lse = jax.nn.logsumexp(z, axis=-1)  # [C]
        lp = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0] - lse
        if not with_entropy:
            return lp, None
        zs = z if entropy_grad else jax.lax.stop_gradient(z)
        ent = jax.nn.logsumexp(zs, axis=-1) - jnp.sum(jax.nn.softmax(zs, axis=-1) * zs, axis=-1)
        return lp, ent

    lp, ent = jax.lax.map(one, (h, y))  # [n, C] each
    lp = lp.reshape(-1)[:N].reshape(B, T)
    return lp, None if ent is None else ent.reshape(-1)[:N].reshape(B, T)


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
