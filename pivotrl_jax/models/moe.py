"""Qwen3-MoE sparse block: float32 top-k routing (moe_routing.py), then a dispatch chosen by name.

    y, stats = block(x [B, T, D], valid [B, T] bool, replayed [B, T, R] | None)

Padding (valid False) is never routed: it reaches no expert, takes no row of any expert's work
and is left out of the router statistics, so a real token's output and the statistics do not
depend on how much padding surrounds it. `replayed` forces the experts of tokens whose routing
another engine recorded (routing replay). The dispatches (moe_dispatch.DISPATCH) compute the
same function: "dense" (the reference), "ragged", "blocked" and "expert_parallel" (the default:
all-to-all over the mesh's `expert` axis, the local sorted dispatch without a mesh).

With `chunk` > 0, rows longer than `chunk` positions are dispatched `chunk` positions at a time
(a rematerialised `lax.scan`), which bounds the dispatch's buffers on long contexts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# The dispatch modules register themselves in DISPATCH on import.
from pivotrl_jax.models import moe_expert_parallel, moe_sorted  # noqa: F401
from pivotrl_jax.models.config import ModelConfigError
from pivotrl_jax.models.layers import normal_init
from pivotrl_jax.models.moe_dispatch import DISPATCH, Dispatch
from pivotrl_jax.models.moe_routing import RouterStats, route

Array = jax.Array


def chunked(dispatch: Dispatch, chunk: int) -> Dispatch:
    """`dispatch` applied to T / chunk slices of positions in turn, each rematerialised."""

    def run(x, weights, experts, gate, up, down):
        B, T, D = x.shape
        if not chunk or chunk >= T:
            return dispatch(x, weights, experts, gate, up, down)
        if T % chunk:
            raise ValueError(f"MoE chunk {chunk} does not divide the row length {T}")
        split = lambda a: jnp.swapaxes(a.reshape(B, T // chunk, chunk, *a.shape[2:]), 0, 1)
        one = jax.checkpoint(lambda xs: dispatch(*xs, gate, up, down))
        ys = jax.lax.map(one, (split(x), split(weights), split(experts)))  # [T/c, B, c, D]
        return jnp.swapaxes(ys, 0, 1).reshape(B, T, D)

    return run


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
        dispatch: str = "expert_parallel",
        chunk: int = 0,
        router_trainable: bool = True,
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
        self.chunk = chunk
        self.router_trainable = router_trainable
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

    def __call__(
        self,
        x: Array,  # [B, T, D]
        valid: Array | None = None,  # [B, T] bool; None: every token is real
        replayed: Array | None = None,  # [B, T, R] int; NOT_REPLAYED where the router decides
    ) -> tuple[Array, RouterStats]:
        dt = self.dtype
        router = self.router[...]
        if not self.router_trainable:  # a frozen router: no gradient reaches W_r
            router = jax.lax.stop_gradient(router)
        weights, stats = route(x, router, self.top_k, self.norm_topk_prob, valid, replayed)
        y = chunked(DISPATCH.get(self.dispatch), self.chunk)(
            x.astype(dt),
            weights,
            stats.experts,
            self.gate_proj[...].astype(dt),
            self.up_proj[...].astype(dt),
            self.down_proj[...].astype(dt),
        )
        return y, stats
