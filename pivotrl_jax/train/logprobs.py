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

import functools
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
    chunk's [C, V] float32 logits is ever live: the backward pass recomputes each chunk's
    logits z from the hidden states and the saved logsumexp, with p = softmax(z),

        d z = g_lp (onehot(y) - p) - g_H p (z - Σ_v p_v z_v),

    then d hidden = d z W^T and d W = Σ_chunks hidden^T d z. The entropy has no gradient
    unless `entropy_grad` (an entropy bonus in the loss).
    """
    B, T, D = hidden.shape
    N = B * T
    C = min(chunk, N)
    n = -(-N // C)
    h = jnp.pad(hidden.reshape(N, D), ((0, n * C - N), (0, 0))).reshape(n, C, D)
    y = jnp.pad(targets.reshape(N).astype(jnp.int32), (0, n * C - N)).reshape(n, C)
    lp, ent = _chunked(h, head, y, with_entropy, entropy_grad)  # [n, C] each
    lp = lp.reshape(-1)[:N].reshape(B, T)
    return lp, ent.reshape(-1)[:N].reshape(B, T) if with_entropy else None


def _chunk_stats(h: Array, head: Array, y: Array, with_entropy: bool):
    """logsumexp [C], log p(y) [C] and entropy [C] (or None) of the chunk's logits h W."""
    z = jnp.einsum("CD,DV->CV", h, head, preferred_element_type=jnp.float32)  # float32
    lse = jax.nn.logsumexp(z, axis=-1)
    onehot = jnp.arange(z.shape[-1])[None, :] == y[:, None]  # [C, V]
    lp = jnp.sum(jnp.where(onehot, z, 0.0), axis=-1) - lse
    ent = lse - jnp.sum(jnp.exp(z - lse[:, None]) * z, axis=-1) if with_entropy else None
    return lse, lp, ent


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _chunked(h, head, y, with_entropy, entropy_grad):
    """h [n, C, D], head [D, V], y [n, C] -> (log p(y), entropy or zeros), [n, C] each."""
    return _chunked_fwd(h, head, y, with_entropy, entropy_grad)[0]


def _chunked_fwd(h, head, y, with_entropy, entropy_grad):
    def one(_, hy):
        lse, lp, ent = _chunk_stats(hy[0], head, hy[1], with_entropy)
        return None, (lp, lse, jnp.zeros_like(lp) if ent is None else ent)

    _, (lp, lse, ent) = jax.lax.scan(one, None, (h, y))
    return (lp, ent), (h, head, y, lse)


def _chunked_bwd(with_entropy, entropy_grad, res, grads):
    h, head, y, lse = res
    g_lp, g_ent = grads

    def one(d_head, xs):
        h, y, lse, g_lp, g_ent = xs
        z = jnp.einsum("CD,DV->CV", h, head, preferred_element_type=jnp.float32)
        p = jnp.exp(z - lse[:, None])  # [C, V]
        onehot = jnp.arange(z.shape[-1])[None, :] == y[:, None]
        dz = g_lp[:, None] * (onehot.astype(z.dtype) - p)
        if with_entropy and entropy_grad:
            mean_z = jnp.sum(p * z, axis=-1, keepdims=True)
            dz = dz - g_ent[:, None] * p * (z - mean_z)
        dz = dz.astype(h.dtype)
        d_h = jnp.einsum("CV,DV->CD", dz, head, preferred_element_type=jnp.float32)
        d_head = d_head + jnp.einsum("CD,CV->DV", h, dz, preferred_element_type=jnp.float32)
        return d_head, d_h.astype(h.dtype)

    zero = jnp.zeros(head.shape, jnp.float32)
    d_head, d_h = jax.lax.scan(one, zero, (h, y, lse, g_lp, g_ent))
    return d_h, d_head.astype(head.dtype), None


_chunked.defvjp(_chunked_fwd, _chunked_bwd)


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
