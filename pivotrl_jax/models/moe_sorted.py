"""Sparse MoE dispatches on sorted (token, expert) slots: "ragged" and "blocked".

Both flatten the N = B*T tokens' R slots into M = N*R rows, sort the rows by expert (stably, so
"no expert" rows, id E, go last and are never computed), run each expert on its contiguous
group, and put the rows back:

    rows     m = (n, r):  x_m = x_n,  g_m = experts[n, r]                     [M, D], [M]
    sort     order = argsort(g),  sizes[e] = #{m : g_m = e}  (e < E)            [M], [E]
    experts  Y[order[j]] = Expert_{g[order[j]]}(x[order[j]])                  [M, D]
    combine  y_n = sum_r w_nr Y[(n, r)]                                       [N, D]

The experts step is a "grouped FFN" over sorted rows and group sizes (rows past sum(sizes) give
0), in `GROUPED`:

  "ragged_dot"  `jax.lax.ragged_dot` for each projection: Megablox / grouped GEMM on TPU / GPU.
                XLA:CPU lowers it to a masked product of every group with every row.
  "blocked"     each group padded to a multiple of b rows, so that at most ceil(M / b) + E
                blocks of b rows each belong to one expert; a `lax.scan` runs one
                [b, D] x [D, F] SwiGLU per block in use (later blocks are skipped by
                `lax.cond`). Extra work: fewer than E * b padding rows. Fast on XLA:CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pivotrl_jax.models.moe_dispatch import DISPATCH, swiglu
from pivotrl_jax.registry import Registry

Array = jax.Array
GroupedFFN = Callable[[Array, Array, Array, Array, Array], Array]
GROUPED: Registry[GroupedFFN] = Registry("grouped expert FFN")
MAX_BLOCK = 256  # rows per block; larger blocks stop paying off on XLA:CPU
MIN_BLOCK = 8


@GROUPED.register("ragged_dot")
def ragged_dot_ffn(xs: Array, sizes: Array, gate: Array, up: Array, down: Array) -> Array:
    """xs [M, D] sorted by group, sizes [G] -> [M, D]; gate/up [G, D, F], down [G, F, D]."""
    h = jax.nn.silu(jax.lax.ragged_dot(xs, gate, sizes)) * jax.lax.ragged_dot(xs, up, sizes)
    return jax.lax.ragged_dot(h, down, sizes)


def block_rows(rows: int, groups: int) -> int:
    """b: the power of two nearest below rows / groups, within [MIN_BLOCK, MAX_BLOCK]."""
    per_group = max(rows // max(groups, 1), 1)
    return min(MAX_BLOCK, max(MIN_BLOCK, 1 << (per_group.bit_length() - 1)))


@GROUPED.register("blocked")
def blocked_ffn(
    xs: Array, sizes: Array, gate: Array, up: Array, down: Array, block: int | None = None
) -> Array:
    """Same contract as `ragged_dot_ffn`, computed in expert-aligned blocks of b rows."""
    M, D = xs.shape
    G = gate.shape[0]
    b = block or block_rows(M, G)
    nblk = -(-M // b) + G  # static bound on the blocks in use
    padded = (sizes + b - 1) // b * b  # [G] rows each group takes, block-aligned
    padded_end = jnp.cumsum(padded)
    end = jnp.cumsum(sizes)
    j = jnp.arange(M)
    g = jnp.searchsorted(end, j, side="right")  # [M] group of sorted row j; G past the end
    gc = jnp.minimum(g, G - 1)
    slot = jnp.where(g < G, padded_end[gc] - padded[gc] + j - (end[gc] - sizes[gc]), nblk * b)
    xb = jnp.zeros((nblk * b, D), xs.dtype).at[slot].set(xs, mode="drop")
    used = padded_end[-1] // b  # blocks holding rows
    starts = jnp.arange(nblk) * b
    block_group = jnp.minimum(jnp.searchsorted(padded_end, starts, side="right"), G - 1)

    def body(_, inp):
        i, x_blk, e = inp  # [], [b, D], []
        y = jax.lax.cond(
            i < used,
            lambda: swiglu(x_blk, gate[e], up[e], down[e]),
            # Zeros as an empty product, so that inside a shard_map they vary over the same
            # mesh axes as the other branch's output.
            lambda: x_blk[:, :0] @ down[e][:0],
        )
        return None, y

    _, yb = jax.lax.scan(body, None, (jnp.arange(nblk), xb.reshape(nblk, b, D), block_group))
    return yb.reshape(nblk * b, D).at[slot].get(mode="fill", fill_value=0)


def expert_rows(
    xs: Array,  # [M, D]
    ids: Array,  # [M] int: the expert of each row, G = none
    gate: Array,  # [G, D, F]
    up: Array,  # [G, D, F]
    down: Array,  # [G, F, D]
    grouped: str,
) -> Array:
    """[M, D]: row m through expert ids[m] (0 where ids[m] == G), via GROUPED[grouped]."""
    G = gate.shape[0]
    order = jnp.argsort(ids, stable=True)  # [M] rows grouped by expert, "none" last
    sizes = jnp.bincount(ids, length=G).astype(jnp.int32)  # [G]; id G is not counted
    ys = GROUPED.get(grouped)(xs[order], sizes, gate, up, down)  # [M, D] sorted
    return jnp.zeros_like(ys).at[order].set(ys, unique_indices=True)


def sorted_dispatch(
    grouped: str, x: Array, weights: Array, experts: Array, gate: Array, up: Array, down: Array
) -> Array:
    """The module docstring's four steps on one device; the DISPATCH contract of moe_dispatch."""
    B, T, D = x.shape
    R = experts.shape[-1]
    xs = jnp.repeat(x.reshape(B * T, D), R, axis=0)  # [M, D], row (n, r) = x_n
    ys = expert_rows(xs, experts.reshape(-1), gate, up, down, grouped)  # [M, D]
    y = jnp.einsum("NRD,NR->ND", ys.reshape(B * T, R, D), weights.reshape(B * T, R).astype(x.dtype))
    return y.reshape(B, T, D)


@DISPATCH.register("ragged")
def ragged_dispatch(x, weights, experts, gate, up, down):
    """Sorted rows through `jax.lax.ragged_dot` (the sparse path on GPU / TPU)."""
    return sorted_dispatch("ragged_dot", x, weights, experts, gate, up, down)


@DISPATCH.register("blocked")
def blocked_dispatch(x, weights, experts, gate, up, down):
    """Sorted rows in expert-aligned blocks (the sparse path on CPU)."""
    return sorted_dispatch("blocked", x, weights, experts, gate, up, down)
