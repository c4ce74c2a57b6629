"""Expert parallelism: the "expert_parallel" dispatch, a `shard_map` with all-to-all over `expert`.

Under a mesh (`jax.set_mesh`), tokens are split over the batch axes (data, fsdp, expert) and the
E experts over `expert` (E / e per device, their F dimension over `tensor` when it divides).
Each device, with its n tokens' M = n * R (token, expert) rows:

  1. sorts its rows by destination device d = expert // (E / e) (rows with no expert go last);
  2. sends each destination its slice and receives the rows other devices route to its experts
     (`exchange`: `jax.lax.ragged_all_to_all` on GPU / TPU; on XLA:CPU, which lacks it, the same
     contract emulated with a padded `jax.lax.all_to_all` of M-row slices);
  3. runs its experts on the received rows (moe_sorted.GROUPED: ragged_dot on GPU / TPU, blocked
     on CPU), summing the F-sharded down projection over `tensor`;
  4. sends the results back the same way and combines y_n = sum_r w_nr Y[(n, r)].

Receive buffers hold e slices of M rows (device i's rows at offset i * M), so nothing is ever
dropped, whatever the routing; MoEBlock's `chunk` bounds M on long rows. Without a mesh, or on
one device, the local sorted dispatch runs instead (moe_sorted.py: ragged on GPU / TPU, blocked
on CPU), which makes "expert_parallel" the right choice everywhere (the ModelConfig default).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from pivotrl_jax.models.moe_dispatch import DISPATCH
from pivotrl_jax.models.moe_sorted import expert_rows, sorted_dispatch

Array = jax.Array
TOKEN_AXES = ("data", "fsdp", "expert")  # what splits tokens (ShardingRules.batch's default)
EXPERT_AXIS = "expert"
TENSOR_AXIS = "tensor"


def local_grouped() -> str:
    """The grouped FFN for this backend: ragged_dot where it is a grouped GEMM, else blocked."""
    return "blocked" if jax.default_backend() == "cpu" else "ragged_dot"


def padded_ragged_all_to_all(
    operand: Array,  # [M_in, ...]
    output: Array,  # [M_out, ...]
    input_offsets: Array,  # [e] int32
    send_sizes: Array,  # [e] int32
    output_offsets: Array,  # [e] int32: where each sent slice lands on its receiver
    recv_sizes: Array,  # [e] int32
    *,
    axis_name: str,
    capacity: int,  # static bound on any slice's rows
) -> Array:
    """`jax.lax.ragged_all_to_all`'s contract (one slice per device) with a dense all_to_all
    of [e, capacity] padded slices, for backends without the ragged collective."""
    e = input_offsets.shape[0]
    rows = jnp.arange(capacity)
    take = input_offsets[:, None] + rows  # [e, C]
    sent = rows < send_sizes[:, None]  # [e, C]
    chunks = jnp.where(
        sent.reshape(e, capacity, *(1,) * (operand.ndim - 1)),
        operand.at[take].get(mode="fill", fill_value=0),
        0,
    )  # [e, C, ...]
    got = jax.lax.all_to_all(chunks, axis_name, 0, 0)  # [e, C, ...], slice i from device i
    offsets = jax.lax.all_to_all(output_offsets, axis_name, 0, 0, tiled=True)  # [e]
    where = jnp.where(rows < recv_sizes[:, None], offsets[:, None] + rows, output.shape[0])
    return output.at[where.reshape(-1)].set(got.reshape(e * capacity, *operand.shape[1:]),
                                            mode="drop")  # fmt: skip


def exchange(*args, axis_name: str, capacity: int) -> Array:
    """ragged_all_to_all where the backend has it, else its padded emulation."""
    if jax.default_backend() == "cpu":
        return padded_ragged_all_to_all(*args, axis_name=axis_name, capacity=capacity)
    return jax.lax.ragged_all_to_all(*args, axis_name=axis_name)


def _device_dispatch(
    x: Array,  # [n, D]
    weights: Array,  # [n, R] float32
    experts: Array,  # [n, R] int32 global ids; E = none
    gate: Array,  # [El, D, Ft]
    up: Array,  # [El, D, Ft]
    down: Array,  # [El, Ft, D]
    *,
    e: int,
    grouped: str,
    tensor: bool,
    replicas: tuple[str, ...],
) -> Array:
    """Steps 1-4 of the module docstring on one device (inside shard_map). `replicas` are the
    token axes the expert weights are replicated over."""
    if replicas:
        # Weights as values that vary over the token axes up front: the transpose of this cast
        # (the sum of their gradients over those axes) then happens here, once, and not inside
        # the blocked FFN's per-device `lax.cond`, where devices that skip a block would leave
        # the others waiting in the collective. The same for tokens over `tensor` below.
        gate, up, down = (jax.lax.pcast(w, replicas, to="varying") for w in (gate, up, down))
    over_tensor = (
        (lambda a: jax.lax.pcast(a, (TENSOR_AXIS,), to="varying")) if tensor else (lambda a: a)
    )
    n, R = experts.shape
    D = x.shape[-1]
    El = gate.shape[0]
    M = n * R
    if e == 1:  # every expert is here: no exchange
        xs = over_tensor(jnp.repeat(x, R, axis=0))
        ys = expert_rows(xs, experts.reshape(-1), gate, up, down, grouped)
        if tensor:
            ys = jax.lax.psum(ys, TENSOR_AXIS)
        return jnp.einsum("NRD,NR->ND", ys.reshape(n, R, D), weights.astype(x.dtype))
    me = jax.lax.axis_index(EXPERT_AXIS)
    flat = experts.reshape(-1)  # [M]
    dest = flat // El  # [M] destination device; e for "no expert"
    order = jnp.argsort(dest, stable=True)
    counts = jnp.bincount(dest, length=e).astype(jnp.int32)  # [e] rows for each device
    starts = (jnp.cumsum(counts) - counts).astype(jnp.int32)  # [e] their offsets once sorted
    xs = x[order // R]  # [M, D] sorted by destination
    local_ids = jnp.where(dest < e, flat - dest * El, El)[order]  # [M] expert on the receiver

    recv_counts = jax.lax.all_to_all(counts, EXPERT_AXIS, 0, 0, tiled=True)  # [e] from each
    slots = (jnp.arange(e) * M).astype(jnp.int32)  # device i's rows land at i * M
    go = functools.partial(exchange, axis_name=EXPERT_AXIS, capacity=M)
    mine = jnp.full((e,), me * M, jnp.int32)
    rx = go(xs, jnp.zeros((e * M, D), x.dtype), starts, counts, mine, recv_counts)
    rid = go(local_ids, jnp.full((e * M,), El, jnp.int32), starts, counts, mine, recv_counts)

    ys = expert_rows(over_tensor(rx), rid, gate, up, down, grouped)  # [e * M, D]
    if tensor:  # partial sums over the F shards
        ys = jax.lax.psum(ys, TENSOR_AXIS)

    back_to = jax.lax.all_to_all(starts, EXPERT_AXIS, 0, 0, tiled=True)  # senders' offsets
    out = go(ys, jnp.zeros((M, D), ys.dtype), slots, recv_counts, back_to, counts)  # [M, D]
    pairs = jnp.zeros_like(out).at[order].set(out, unique_indices=True)  # [M, D] (n, r) order
    return jnp.einsum("NRD,NR->ND", pairs.reshape(n, R, D), weights.astype(x.dtype))


@DISPATCH.register("expert_parallel")
def expert_parallel_dispatch(x, weights, experts, gate, up, down):
    """The module docstring's exchange under the current mesh; the local dispatch without one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or math.prod(mesh.shape.values()) == 1:
        return sorted_dispatch(local_grouped(), x, weights, experts, gate, up, down)
    B, T, D = x.shape
    E, _, F = gate.shape
    R = experts.shape[-1]
    e = mesh.shape.get(EXPERT_AXIS, 1)
    if E % e:
        raise ValueError(f"{E} experts do not split over an expert axis of {e} devices")
    token_axes = tuple(a for a in TOKEN_AXES if mesh.shape.get(a, 1) > 1)
    shards = math.prod(mesh.shape[a] for a in token_axes)
    t = mesh.shape.get(TENSOR_AXIS, 1)
    tensor = t > 1 and F % t == 0
    f_axis = TENSOR_AXIS if tensor else None
    N = B * T
    pad = -N % shards  # "no expert" tokens so that every device gets as many
    xs = jnp.pad(x.reshape(N, D), ((0, pad), (0, 0)))
    ws = jnp.pad(weights.reshape(N, R), ((0, pad), (0, 0)))
    ids = jnp.pad(experts.reshape(N, R), ((0, pad), (0, 0)), constant_values=E)
    rows = P(token_axes or None, None)
    replicas = tuple(a for a in token_axes if a != EXPERT_AXIS)
    body = functools.partial(
        _device_dispatch, e=e, grouped=local_grouped(), tensor=tensor, replicas=replicas
    )
    y = jax.shard_map(
        body,
        in_specs=(
            rows,
            rows,
            rows,
            P(EXPERT_AXIS if e > 1 else None, None, f_axis),
            P(EXPERT_AXIS if e > 1 else None, None, f_axis),
            P(EXPERT_AXIS if e > 1 else None, f_axis, None),
        ),
        out_specs=rows,
    )(xs, ws, ids, gate, up, down)
    return y[:N].reshape(B, T, D)
