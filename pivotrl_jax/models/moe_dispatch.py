"""The MoE dispatch registry and its reference member, "dense".

A dispatch computes step 5 of the MoE block (moe.py) once routing is done:

    y_t = sum_r w_tr * Expert_{e_tr}(x_t),   Expert(x) = down(silu(x gate) * (x up))

    dispatch(x [B, T, D], weights [B, T, R] f32, experts [B, T, R] int32,
             gate [E, D, F], up [E, D, F], down [E, F, D]) -> y [B, T, D] in x.dtype

An expert id of E means "no expert" (a padding token, see moe_routing.py): such a slot adds
nothing and, in the sparse dispatches, takes no row of any expert's work. Members:

  "dense"            every token through every expert, weighted by a [B, T, E] combine
                     matrix: exact and simple, E / R times the FLOPs; the reference.
  "ragged"           (moe_sorted.py) tokens sorted by expert, `jax.lax.ragged_dot`.
  "blocked"          (moe_sorted.py) tokens sorted by expert into expert-aligned blocks, one
                     matmul per block: the chosen experts only, fast on XLA:CPU.
  "expert_parallel"  (moe_expert_parallel.py) `shard_map` over the mesh, tokens exchanged with
                     all-to-all over the `expert` axis, each device running its own experts;
                     without a mesh, ragged on GPU / TPU and blocked on CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pivotrl_jax.registry import Registry

Array = jax.Array
Dispatch = Callable[[Array, Array, Array, Array, Array, Array], Array]
DISPATCH: Registry[Dispatch] = Registry("MoE dispatch")


def swiglu(x: Array, gate: Array, up: Array, down: Array) -> Array:
    """One expert on rows: down(silu(x gate) * (x up)); x: [M, D], gate/up [D, F], down [F, D]."""
    return (jax.nn.silu(x @ gate) * (x @ up)) @ down


@DISPATCH.register("dense")
def dense_dispatch(
    x: Array, weights: Array, experts: Array, gate: Array, up: Array, down: Array
) -> Array:
    """Every expert on every token; the combine matrix keeps the chosen R (one_hot(E) = 0)."""
    E = gate.shape[0]
    combine = jnp.sum(
        jax.nn.one_hot(experts, E, dtype=jnp.float32) * weights[..., None], axis=-2
    )  # [B, T, E]
    h = jax.nn.silu(jnp.einsum("BTD,EDF->BTEF", x, gate)) * jnp.einsum("BTD,EDF->BTEF", x, up)
    y = jnp.einsum("BTEF,EFD->BTED", h, down)
    return jnp.einsum("BTED,BTE->BTD", y, combine.astype(x.dtype))
