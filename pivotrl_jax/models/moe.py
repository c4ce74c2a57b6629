"""Qwen3-MoE sparse block: top-k softmax routing, then a dispatch chosen by name.

The block, step by step:
  1. router logits  z = x W_r                       [B, T, E]   (float32)
  2. probabilities  p = softmax(z) over all E        [B, T, E]   (float32)
  3. top-k          (w, e) = top_R(p)                [B, T, R]
  4. if norm_topk_prob: w <- w / sum_R w
  5. y = sum_r w_r * Expert_{e_r}(x),  Expert(x) = down(silu(x gate) * (x up))

Dispatch functions (step 5) live in `DISPATCH`, all with the signature of `dense_dispatch`:
  "dense"   every token through every expert, weighted by a [B, T, E] combine matrix; exact,
            simple, E times the FLOPs: the reference and the small-model path.
  "ragged"  tokens sorted by expert and run through `jax.lax.ragged_dot`: the FLOPs of R experts.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from pivotrl_jax.models.config import ModelConfigError
from pivotrl_jax.models.layers import normal_init
from pivotrl_jax.registry import Registry

Array = jax.Array
Dispatch = Callable[[Array, Array, Array, Array, Array, Array], Array]
DISPATCH: Registry[Dispatch] = Registry("MoE dispatch")


def route(x: Array, router: Array, top_k: int, norm_topk_prob: bool) -> tuple[Array, Array]:
    """Steps 1-4. x: [B, T, D], router: [D, E] -> (weights [B, T, R] f32, experts [B, T, R])."""
    # Router logits and softmax in float32, whatever the compute dtype.
    logits = jnp.einsum("BTD,DE->BTE", x.astype(jnp.float32), router.astype(jnp.float32))
    probs = jax.nn.softmax(logits, axis=-1)
    weights, experts = jax.lax.top_k(probs, top_k)  # [B, T, R]
    if norm_topk_prob:
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    return weights, experts


@DISPATCH.register("dense")
def dense_dispatch(
    x: Array, weights: Array, experts: Array, gate: Array, up: Array, down: Array
) -> Array:
    """Step 5 with every expert on every token.

    Args:
      x: [B, T, D] in the compute dtype; weights: [B, T, R] f32; experts: [B, T, R] int;
      gate, up: [E, D, F]; down: [E, F, D], all in the compute dtype.
    Returns:
      [B, T, D] in x.dtype.
    """
    E = gate.shape[0]
    combine = jnp.sum(
        jax.nn.one_hot(experts, E, dtype=jnp.float32) * weights[..., None], axis=-2
    )  # [B, T, E]
    h = jax.nn.silu(jnp.einsum("BTD,EDF->BTEF", x, gate)) * jnp.einsum("BTD,EDF->BTEF", x, up)
    y = jnp.einsum("BTEF,EFD->BTED", h, down)
    return jnp.einsum("BTED,BTE->BTD", y, combine.astype(x.dtype))


@DISPATCH.register("ragged")
def ragged_dispatch(
    x: Array, weights: Array, experts: Array, gate: Array, up: Array, down: Array
) -> Array:
    """Step 5 on the chosen experts only: sort the B*T*R (token, expert) pairs by expert,
    run each expert's contiguous group through `ragged_dot`, unsort, weight and sum over R."""
    B, T, D = x.shape
    R = experts.shape[-1]
    E = gate.shape[0]
    flat = experts.reshape(-1)  # [B*T*R]
    order = jnp.argsort(flat, stable=True)  # pair slots grouped by expert
    xs = x.reshape(B * T, D)[order // R]  # [B*T*R, D]
    sizes = jnp.bincount(flat, length=E).astype(jnp.int32)  # [E]
    h = jax.nn.silu(jax.lax.ragged_dot(xs, gate, sizes)) * jax.lax.ragged_dot(
        xs, up, sizes
    )  # [B*T*R, F]
    ys = jax.lax.ragged_dot(h, down, sizes)  # [B*T*R, D]
    y = jnp.zeros_like(ys).at[order].set(ys).reshape(B * T, R, D)
    y = jnp.sum(y * weights.reshape(B * T, R, 1).astype(x.dtype), axis=1)
    return y.reshape(B, T, D)


class MoEBlock(nnx.Module):
    """Router [D, E] plus E SwiGLU experts stacked as gate/up [E, D, F] and down [E, F, D]."""

    def __init__(
        self,
        hidden_size: int,
        moe_intermediate_size: int,
        num_experts: int,
        num_experts_per_tok: int,
        *,
        norm_topk_prob: bool,
        dispatch: str = "dense",
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        D, F, E = hidden_size, moe_intermediate_size, num_experts
        if dispatch not in DISPATCH:
            raise ModelConfigError(
                "moe_dispatch", f"unknown {dispatch!r}; known: {', '.join(DISPATCH.names())}"
            )
        self.dispatch = dispatch
        self.top_k = num_experts_per_tok
        self.norm_topk_prob = norm_topk_prob
        self.dtype = dtype
        # The router stays replicated: it is small and every device needs all E logits.
        self.router = nnx.Param(normal_init(("embed", None))(rngs.params(), (D, E), param_dtype))
        self.gate_proj = nnx.Param(
            normal_init(("experts", "embed", "mlp"))(rngs.params(), (E, D, F), param_dtype)
        )
        self.up_proj = nnx.Param(
            normal_init(("experts", "embed", "mlp"))(rngs.params(), (E, D, F), param_dtype)
        )
        self.down_proj = nnx.Param(
            normal_init(("experts", "mlp", "embed"))(rngs.params(), (E, F, D), param_dtype)
        )

    def __call__(self, x: Array) -> Array:  # [B, T, D] -> [B, T, D]
        dt = self.dtype
        weights, experts = route(x, self.router[...], self.top_k, self.norm_topk_prob)
        return DISPATCH.get(self.dispatch)(
            x.astype(dt),
            weights,
            experts,
            self.gate_proj[...].astype(dt),
            self.up_proj[...].astype(dt),
            self.down_proj[...].astype(dt),
        )
