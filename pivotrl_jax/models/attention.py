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

from typing import NamedTuple

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


class MaskSource(NamedTuple):
    """What `attention_mask` is built from, given to `Attention` instead of the [B, T, S] mask
    on rows too long to hold it: each query chunk then builds its own (attention_chunked.py)."""

    q_positions: Array  # [B, T]
    q_segments: Array  # [B, T]
    kv_positions: Array  # [B, S]
    kv_segments: Array  # [B, S]
    q_parents: Array | None = None  # [B, T]; None: no segment has a parent


def _attend_by_source(q: Array, k: Array, v: Array, source: MaskSource, chunk: int) -> Array:
    """`attend` with the mask of `source`, `chunk` queries at a time (0: the whole row)."""
    if chunk and q.shape[1] > chunk:
        from pivotrl_jax.models.attention_chunked import attend_in_chunks

        return attend_in_chunks(q, k, v, *source[:4], chunk, source.q_parents)
    return attend(q, k, v, attention_mask(*source))


def attend(q: Array, k: Array, v: Array, mask: Array, block: int = 0) -> Array:
    """softmax(q k^T / sqrt(H) + mask) v with K kv heads shared by groups of N / K query heads.

    Scores and softmax in float32 (as transformers' eager attention), whatever the dtype; the
    backward pass recomputes them (`_softmax_attention`), so the [T, S] probabilities are
    never stored. With `block` > 0 (and S == T) the queries go in column blocks of that size,
    block i against keys [0, (i + 1) · block) only: the same result when no query sees a key in
    a later column (true without a cache: in every row layout a token's segment and its parent
    come before it), for about half the work of the full [T, S] scores.

    Args:
      q: [B, T, N, H]; k, v: [B, S, K, H]; mask: [B, T, S] bool.
    Returns:
      [B, T, N, H] in q.dtype.
    """
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    G = N // K  # query heads per kv head
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, S, H]
    if block <= 0 or T != S or block >= T:
        block = T
    outs = []
    for start in range(0, T, block):
        end = min(start + block, T)
        end_k = end if block < T else S
        # [B, t, K, G, H] -> [B, K, G * t, H]: one batched matmul per (row, kv head).
        qb = q[:, start:end].reshape(B, end - start, K, G, H).transpose(0, 2, 3, 1, 4)
        ob = _softmax_attention(
            qb.reshape(B, K, G * (end - start), H),
            k[:, :, :end_k],
            v[:, :, :end_k],
            mask[:, start:end, :end_k],
        )  # [B, K, G * t, H]
        outs.append(ob.reshape(B, K, G, end - start, H).transpose(0, 3, 1, 2, 4))
    return jnp.concatenate(outs, axis=1).reshape(B, T, N, H)


def _scores(q: Array, k: Array, mask: Array) -> Array:
    """Masked scaled scores [B, K, G * T, S] float32 of q [B, K, G * T, H], k [B, K, S, H]."""
    B, K, M, H = q.shape
    T, S = mask.shape[1], mask.shape[2]
    s = jnp.einsum("BKMH,BKSH->BKMS", q, k, preferred_element_type=jnp.float32) * (H**-0.5)
    s = jnp.where(mask[:, None, None], s.reshape(B, K, M // T, T, S), _MASKED)
    return s.reshape(B, K, M, S)


@jax.custom_vjp
def _softmax_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """o = softmax(s) v, s = _scores(q, k, mask); q [B, K, M, H], k, v [B, K, S, H].

    Forward: m = max_s s, z = Σ_s exp(s - m), o = (exp(s - m) v) / z, keeping lse = m + log z.
    Backward (flash attention's): p = exp(s - lse) from recomputed scores,
    dv = p^T do, dp = do v^T, ds = p ∘ (dp - D) with D = Σ_h do ∘ o, dq = ds k, dk = ds^T q
    (times the 1/sqrt(H) of the scores).
    """
    return _softmax_attention_fwd(q, k, v, mask)[0]


def _softmax_attention_fwd(q, k, v, mask):
    s = _scores(q, k, mask)
    m = jnp.max(s, axis=-1, keepdims=True)
    p = jnp.exp(s - m)
    total = jnp.sum(p, axis=-1, keepdims=True)
    o = jnp.einsum("BKMS,BKSH->BKMH", p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    o = (o / total).astype(q.dtype)
    return o, (q, k, v, mask, o, m + jnp.log(total))


def _softmax_attention_bwd(res, do):
    q, k, v, mask, o, lse = res
    p = jnp.exp(_scores(q, k, mask) - lse)  # [B, K, M, S] float32
    dv = jnp.einsum("BKMS,BKMH->BKSH", p.astype(do.dtype), do, preferred_element_type=jnp.float32)
    dp = jnp.einsum("BKMH,BKSH->BKMS", do, v, preferred_element_type=jnp.float32)
    D = jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1, keepdims=True)
    ds = (p * (dp - D) * (q.shape[-1] ** -0.5)).astype(q.dtype)
    dq = jnp.einsum("BKMS,BKSH->BKMH", ds, k, preferred_element_type=jnp.float32)
    dk = jnp.einsum("BKMS,BKMH->BKSH", ds, q, preferred_element_type=jnp.float32)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_softmax_attention.defvjp(_softmax_attention_fwd, _softmax_attention_bwd)


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
        chunk: int = 0,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        D, N, K, H = hidden_size, num_heads, num_kv_heads, head_dim
        self.rope_theta = rope_theta
        self.chunk = chunk  # > 0: queries in chunks of this many (attention_chunked.py)
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
        mask: Array | MaskSource,  # [B, T, S] bool, `attention_mask` of the queries and keys
        # (S == T without a cache), or what it is built from, a chunk at a time (`MaskSource`)
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
        if isinstance(mask, MaskSource):
            out = _attend_by_source(q, k.astype(dt), v.astype(dt), mask, self.chunk)
        else:
            out = attend(q, k.astype(dt), v.astype(dt), mask, block)  # [B, T, N, H]
        return jnp.einsum("BTNH,NHD->BTD", out, self.o_proj[...].astype(dt)), cache_kv
