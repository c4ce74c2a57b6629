"""Sparse MoE dispatches on sorted (token, expert) slots: "ragged" and "blocked".

Both flatten the N = B*T tokens' R slots into M = N*R rows, group the rows by expert ("no
expert" rows, id E, are never computed), run each expert on its contiguous group, and put the
rows back:

    rows     m = (n, r):  x_m = x_n,  g_m = experts[n, r]                     [M, D], [M]
    group    rows of expert e contiguous, sizes[e] = #{m : g_m = e}  (e < E)    [E]
    experts  Y_m = Expert_{g_m}(x_m)                                          [M, D]
    combine  y_n = sum_r w_nr Y[(n, r)]                                       [N, D]

The experts step is a "grouped FFN" over rows and their expert ids, in `GROUPED`:

  "ragged_dot"  rows sorted by expert (stable argsort), `jax.lax.ragged_dot` for each
                projection: Megablox / grouped GEMM on TPU / GPU. XLA:CPU lowers it to a
                masked product of every group with every row.
  "blocked"     each group padded to a multiple of b rows, so that the rows fill at most
                ceil(M / b) + E blocks of b rows, each block one expert's; one batched
                [n, b, D] x [n, D, F] SwiGLU over all blocks, with each block's expert
                weights gathered. Rows move to and from their block slots by gathers only
                (`move_rows`: the backward of a gather by a one-to-one map is a gather by the
                inverse map, not a scatter-add). Extra work: fewer than E * b padding rows
                plus up to E unused blocks. Fast on XLA:CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pivotrl_jax.models.moe_dispatch import DISPATCH
from pivotrl_jax.registry import Registry

Array = jax.Array
GroupedFFN = Callable[[Array, Array, Array, Array, Array], Array]
GROUPED: Registry[GroupedFFN] = Registry("grouped expert FFN")
MAX_BLOCK = 256  # rows per block; larger blocks stop paying off on XLA:CPU
MIN_BLOCK = 8


def ragged_dot_ffn(xs: Array, sizes: Array, gate: Array, up: Array, down: Array) -> Array:
    """xs [M, D] sorted by group, sizes [G] -> [M, D]; gate/up [G, D, F], down [G, F, D]."""
    h = jax.nn.silu(jax.lax.ragged_dot(xs, gate, sizes)) * jax.lax.ragged_dot(xs, up, sizes)
    return jax.lax.ragged_dot(h, down, sizes)


@GROUPED.register("ragged_dot")
def ragged_dot_rows(xs: Array, ids: Array, gate: Array, up: Array, down: Array) -> Array:
    """xs [M, D], ids [M] (G: no expert) -> [M, D], via `ragged_dot_ffn` on sorted rows."""
    G = gate.shape[0]
    order = jnp.argsort(ids, stable=True)  # [M] rows grouped by expert, "none" last
    sizes = jnp.bincount(ids, length=G).astype(jnp.int32)  # [G]; id G is not counted
    ys = ragged_dot_ffn(xs[order], sizes, gate, up, down)  # [M, D] sorted
    return jnp.zeros_like(ys).at[order].set(ys, unique_indices=True)


@jax.custom_vjp
def move_rows(x: Array, to: Array, back: Array) -> Array:
    """y[p] = x[to[p]], 0 where to[p] == len(x); x [M, D], to [P] -> [P, D].

    `back` [M] is the inverse map (back[to[p]] = p where to[p] < M; P for rows that go
    nowhere), so the gradient dx[m] = dy[back[m]] is a gather as well."""
    return _take_or_zero(x, to)


def _take_or_zero(x: Array, idx: Array) -> Array:
    return jnp.concatenate([x, jnp.zeros((1, x.shape[1]), x.dtype)])[idx]


def _move_rows_fwd(x: Array, to: Array, back: Array):
    return _take_or_zero(x, to), back


def _move_rows_bwd(back: Array, dy: Array):
    return _take_or_zero(dy, back), None, None


move_rows.defvjp(_move_rows_fwd, _move_rows_bwd)


def block_rows(rows: int, groups: int) -> int:
    """b: the power of two nearest below rows / groups, within [MIN_BLOCK, MAX_BLOCK]."""
    per_group = max(rows // max(groups, 1), 1)
    return min(MAX_BLOCK, max(MIN_BLOCK, 1 << (per_group.bit_length() - 1)))


@GROUPED.register("blocked")
def blocked_rows(
    xs: Array, ids: Array, gate: Array, up: Array, down: Array, block: int | None = None
) -> Array:
    """Same contract as `ragged_dot_rows`, computed in expert-aligned blocks of b rows."""
    M, D = xs.shape
    G = gate.shape[0]
    b = block or block_rows(M, G)
    nblk = -(-M // b) + G  # static bound on the blocks in use
    P = nblk * b
    order = jnp.argsort(ids, stable=True)  # [M] sorted position j -> row
    sizes = jnp.bincount(ids, length=G).astype(jnp.int32)  # [G]
    padded = (sizes + b - 1) // b * b  # [G] rows each group takes, block-aligned
    padded_end = jnp.cumsum(padded)
    end = jnp.cumsum(sizes)
    j = jnp.arange(M)
    g = jnp.searchsorted(end, j, side="right")  # [M] group of sorted position j; G past the end
    gc = jnp.minimum(g, G - 1)
    slot = jnp.where(g < G, padded_end[gc] - padded[gc] + j - (end[gc] - sizes[gc]), P)
    pos = jnp.zeros(M, jnp.int32).at[order].set(slot.astype(jnp.int32), unique_indices=True)
    src = jnp.full(P, M, jnp.int32).at[pos].set(jnp.arange(M, dtype=jnp.int32), mode="drop")
    xb = move_rows(xs, src, pos).reshape(nblk, b, D)  # [n, b, D], padding rows 0
    block_group = jnp.minimum(jnp.searchsorted(padded_end, jnp.arange(nblk) * b, "right"), G - 1)
    wg, wu, wd = gate[block_group], up[block_group], down[block_group]  # [n, D, F], [n, F, D]
    h = jax.nn.silu(jnp.einsum("nbd,ndf->nbf", xb, wg)) * jnp.einsum("nbd,ndf->nbf", xb, wu)
    yb = jnp.einsum("nbf,nfd->nbd", h, wd).reshape(P, D)
    return move_rows(yb, pos, src)  # [M, D]; rows of no expert 0


def expert_rows(
    xs: Array,  # [M, D]
    ids: Array,  # [M] int: the expert of each row, G = none
    gate: Array,  # [G, D, F]
    up: Array,  # [G, D, F]
    down: Array,  # [G, F, D]
    grouped: str,
) -> Array:
    """[M, D]: row m through expert ids[m] (0 where ids[m] == G), via GROUPED[grouped]."""
    return GROUPED.get(grouped)(xs, ids, gate, up, down)


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
