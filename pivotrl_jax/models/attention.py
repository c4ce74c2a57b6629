"""Grouped-query attention with q/k RMSNorm and rotary embeddings (Qwen3).

Who may attend to whom is decided by per-token `segment_ids`, `parent_ids` and `positions`:

    key s is visible to query t  iff  seg[s] != 0  and  seg[s] in {seg[t], parent[t]}
                                      and  pos[s] <= pos[t]

`segment_ids` is the attention mask generalised: 0 marks padding (or an empty cache slot),
1 a real token; packed rows number their sequences 1, 2, ... . Padding therefore never leaks,
wherever it sits (left, right, inside a packed row or in the unused tail of a KV cache).
`parent_ids` (0 = none) lets a segment continue another one: G responses to one prompt, packed
after a single copy of it, each name the prompt's segment as parent and carry positions that go
on from the prompt's, so each sees the prompt and itself, never a sibling (train/batching.py):

    tokens:   p p p | a a | b b b        segment: 1 1 1 2 2 3 3 3    parent: 0 0 0 1 1 1 1 1
                                        position: 0 1 2 3 4 3 4 5
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pivotrl_jax.models.layers import RMSNorm, normal_init

Array = jax.Array
_MASKED = -1e30  # finite, so a row with no visible key (a padding query) gives no NaN


def rope(x: Array, positions: Array, theta: float) -> Array:
    """Rotary embedding, transformers' `rotate_half` convention (halves, not interleaved).

    x_rot = x * cos(p * w) + rotate_half(x) * sin(p * w),  w_i = theta^(-2i / H),
    rotate_half([x1, x2]) = [-x2, x1]. Computed in float32, returned in x.dtype.

    Args:
      x: [B, T, N, H] queries or keys.
      positions: [B, T] integer positions.
    """
    H = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, H, 2, dtype=jnp.float32) / H))  # [H/2]
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, H/2]
    angles = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]  # [B, T, 1, H]
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)


def attention_mask(
    q_positions: Array,  # [B, T]
    q_segments: Array,  # [B, T]
    kv_positions: Array,  # [B, S]
    kv_segments: Array,  # [B, S]
    q_parents: Array | None = None,  # [B, T]; None: no segment has a parent
) -> Array:
    """[B, T, S] bool: the visibility rule in the module docstring."""
    kv = kv_segments[:, None, :]
    same = kv == q_segments[:, :, None]
    if q_parents is not None:
        same = same | (kv == q_parents[:, :, None])
    real = kv != 0
    causal = kv_positions[:, None, :] <= q_positions[:, :, None]
    return same & real & causal


def attend(q: Array, k: Array, v: Array, mask: Array, block: int = 0) -> Array:
    """softmax(q k^T / sqrt(H) + mask) v with K kv heads shared by groups of N / K query heads.

    With `block` > 0 (and S == T) the queries go in column blocks of that size, block i against
    keys [0, (i + 1) · block) only: the same result when no query sees a key in a later column
    (true without a cache: in every row layout a token's segment and its parent come before
    it), for about half the work of the full [T, S] scores.

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H]; mask: [B, T, S] bool.
    Returns:
      [B, T, N, H] in q.dtype.
    """
    T, S = q.shape[1], k.shape[1]
    if block <= 0 or T != S or block >= T:
        return _attend(q, k, v, mask)
    outs = []
    for start in range(0, T, block):
        end = min(start + block, T)
        outs.append(_attend(q[:, start:end], k[:, :end], v[:, :end], mask[:, start:end, :end]))
    return jnp.concatenate(outs, axis=1)


def _attend(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """`attend` on the full [T, S] scores."""
    B, T, N, H = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, N // K, H)  # [B, T, K, G, H], G = query heads per kv head
    # Scores and softmax in float32 (as transformers' eager attention), whatever the dtype.
    scores = jnp.einsum("BTKGH,BSKH->BKGTS", q, k, preferred_element_type=jnp.float32)
    scores = scores * (H**-0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASKED)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v)
    return out.reshape(B, T, N, H)


class Attention(nnx.Module):
    """Qwen3 self-attention: per-head RMSNorm on q and k before RoPE, no biases."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        rope_theta: float,
        eps: float,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        D, N, K, H = hidden_size, num_heads, num_kv_heads, head_dim
        self.rope_theta = rope_theta
        self.dtype = dtype
        self.q_proj = nnx.Param(
            normal_init(("embed", "heads", "head_dim"))(rngs.params(), (D, N, H), param_dtype)
        )
        self.k_proj = nnx.Param(
            normal_init(("embed", "kv_heads", "head_dim"))(rngs.params(), (D, K, H), param_dtype)
        )
        self.v_proj = nnx.Param(
            normal_init(("embed", "kv_heads", "head_dim"))(rngs.params(), (D, K, H), param_dtype)
        )
        self.o_proj = nnx.Param(
            normal_init(("heads", "head_dim", "embed"))(rngs.params(), (N, H, D), param_dtype)
        )
        norm = dict(axis_name="head_dim", eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_norm = RMSNorm(H, **norm)
        self.k_norm = RMSNorm(H, **norm)

    def __call__(
        self,
        x: Array,  # [B, T, D]
        positions: Array,  # [B, T]
        mask: Array,  # [B, T, S] bool, `attention_mask` of the queries and keys; S == T
        # without a cache
        cache_kv: tuple[Array, Array] | None = None,  # ([B, S, K, H], [B, S, K, H])
        cache_index: Array | None = None,  # [] first slot written by these T tokens
        block: int = 0,  # query column blocks (see `attend`); without a cache only
    ) -> tuple[Array, tuple[Array, Array] | None]:
        dt = self.dtype
        x = x.astype(dt)
        q = self.q_norm(jnp.einsum("BTD,DNH->BTNH", x, self.q_proj[...].astype(dt)))
        k = self.k_norm(jnp.einsum("BTD,DKH->BTKH", x, self.k_proj[...].astype(dt)))
        v = jnp.einsum("BTD,DKH->BTKH", x, self.v_proj[...].astype(dt))
        q = rope(q, positions, self.rope_theta)
        k = rope(k, positions, self.rope_theta)
        if cache_kv is not None:
            k_cache, v_cache = cache_kv
            start = (0, cache_index, 0, 0)
            k = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
            v = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
            cache_kv = (k, v)
            block = 0
        out = attend(q, k.astype(dt), v.astype(dt), mask, block)  # [B, T, N, H]
        return jnp.einsum("BTNH,NHD->BTD", out, self.o_proj[...].astype(dt)), cache_kv
