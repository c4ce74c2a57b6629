"""The decoder's small pieces: RMSNorm and the SwiGLU MLP.

Parameters are stored in `param_dtype` and cast to the compute `dtype` at use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pivotrl_jax.models.sharding import partitioned

Array = jax.Array
INIT_STD = 0.02  # transformers' initializer_range for Qwen3


def normal_init(names: tuple[str | None, ...]):
    return partitioned(nnx.initializers.normal(INIT_STD), names)


class RMSNorm(nnx.Module):
    """y = x / sqrt(mean(x^2) + eps) * scale, with the statistics in float32 (as transformers).

    >>> norm = RMSNorm(4, axis_name="embed", rngs=nnx.Rngs(0))
    >>> norm.scale.shape
    (4,)
    """

    def __init__(
        self,
        features: int,
        *,
        axis_name: str,
        eps: float = 1e-6,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        del rngs  # the scale starts at one
        self.eps = eps
        self.dtype = dtype
        self.scale = nnx.Param(
            partitioned(nnx.initializers.ones, (axis_name,))(
                jax.random.key(0), (features,), param_dtype
            )
        )

    def __call__(self, x: Array) -> Array:  # [..., features]
        # Normalise in float32, cast back, then scale (transformers' Qwen3RMSNorm order).
        x32 = x.astype(jnp.float32)
        var = jnp.mean(x32 * x32, axis=-1, keepdims=True)
        y = (x32 * jax.lax.rsqrt(var + self.eps)).astype(self.dtype)
        return y * self.scale[...].astype(self.dtype)


class SwiGLU(nnx.Module):
    """down(silu(x @ gate) * (x @ up)): the dense Qwen3 MLP."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        *,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        D, F = hidden_size, intermediate_size
        self.dtype = dtype
        self.gate_proj = nnx.Param(
            normal_init(("embed", "mlp"))(rngs.params(), (D, F), param_dtype)
        )
        self.up_proj = nnx.Param(normal_init(("embed", "mlp"))(rngs.params(), (D, F), param_dtype))
        self.down_proj = nnx.Param(
            normal_init(("mlp", "embed"))(rngs.params(), (F, D), param_dtype)
        )

    def __call__(self, x: Array) -> Array:  # [B, T, D] -> [B, T, D]
        dt = self.dtype
        B, T, D = x.shape
        y = swiglu(
            x.astype(dt).reshape(B * T, D),
            self.gate_proj[...].astype(dt),
            self.up_proj[...].astype(dt),
            self.down_proj[...].astype(dt),
        )
        return y.reshape(B, T, D)


@jax.custom_vjp
def swiglu(x: Array, gate: Array, up: Array, down: Array) -> Array:
    """y = (silu(x W_g) ∘ x W_u) W_d for x [N, D], W_g, W_u [D, F], W_d [F, D].

    The backward pass keeps g = x W_g and u = x W_u and recomputes the rest:
    h = silu(g) u, dh = dy W_d^T, dW_d = h^T dy, dg = dh ∘ u ∘ silu'(g), du = dh ∘ silu(g),
    dW_g = x^T dg, dW_u = x^T du, dx = dg W_g^T + du W_u^T, with
    silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
    """
    return _swiglu_fwd(x, gate, up, down)[0]


def _swiglu_fwd(x, gate, up, down):
    g, u = x @ gate, x @ up  # [N, F]
    return (jax.nn.silu(g) * u) @ down, (x, gate, up, down, g, u)


def _swiglu_bwd(res, dy):
    x, gate, up, down, g, u = res
    s = jax.nn.sigmoid(g)
    silu = g * s
    dh = dy @ down.T  # [N, F]
    dg = dh * u * (s * (1 + g * (1 - s)))
    du = dh * silu
    return dg @ gate.T + du @ up.T, x.T @ dg, x.T @ du, (silu * u).T @ dy


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)
