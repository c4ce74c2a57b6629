"""Attention over query chunks: what a 32k-token row needs when no fused kernel is at hand.

`attention.attend` materialises the [B, K, G, T, S] float32 scores of a whole row: 128 GiB for
32 heads at T = S = 32768. Here the T queries are taken `chunk` at a time (a `lax.map`), each
chunk computing its [B, K, G, chunk, S] scores, its mask from positions and segment ids, its
softmax and output, and nothing of it is kept for the backward pass (`jax.checkpoint`: the chunk
is recomputed), so the peak is one chunk's scores:

    out[:, c*C:(c+1)*C] = attend(q[:, c*C:(c+1)*C], k, v, mask(rows c*C .. (c+1)*C))

Exact: every query still sees every key of the row (the same softmax, in float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pivotrl_jax.models.attention import attend, attention_mask

Array = jax.Array


def attend_in_chunks(
    q: Array,  # [B, T, N, H]
    k: Array,  # [B, S, K, H]
    v: Array,  # [B, S, K, H]
    q_positions: Array,  # [B, T]
    q_segments: Array,  # [B, T]
    kv_positions: Array,  # [B, S]
    kv_segments: Array,  # [B, S]
    chunk: int,  # C, divides T
    q_parents: Array | None = None,  # [B, T] (attention.attention_mask)
) -> Array:
    """`attend` with its mask, C queries at a time; [B, T, N, H] in q.dtype."""
    B, T, N, H = q.shape
    if T % chunk:
        raise ValueError(f"attention chunk {chunk} does not divide the row length {T}")
    n = T // chunk
    split = lambda a: jnp.moveaxis(a.reshape(B, n, chunk, *a.shape[2:]), 1, 0)  # [n, B, C, ...]

    def one(xs):
        q_c, pos_c, seg_c, par_c = xs  # [B, C, N, H], [B, C], [B, C], [B, C] | None
        return attend(q_c, k, v, attention_mask(pos_c, seg_c, kv_positions, kv_segments, par_c))

    parents = None if q_parents is None else split(q_parents)
    xs = (split(q), split(q_positions), split(q_segments), parents)
    out = jax.lax.map(jax.checkpoint(one), xs)
    return jnp.moveaxis(out, 0, 1).reshape(B, T, N, H)
