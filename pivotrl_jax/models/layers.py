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
        x = x.astype(self.dtype)
        gate = jnp.einsum("BTD,DF->BTF", x, self.gate_proj[...].astype(self.dtype))
        up = jnp.einsum("BTD,DF->BTF", x, self.up_proj[...].astype(self.dtype))
        return jnp.einsum(
            "BTF,FD->BTD", jax.nn.silu(gate) * up, self.down_proj[...].astype(self.dtype)
        )
