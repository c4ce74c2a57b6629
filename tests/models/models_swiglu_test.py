"""The SwiGLU MLP's hand-written backward pass against autodiff of the plain formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pivotrl_jax.models.layers import swiglu


def plain(x, gate, up, down):
    """(silu(x W_g) * x W_u) W_d, differentiated by JAX."""
    g = x @ gate
    return (g / (1.0 + jnp.exp(-g)) * (x @ up)) @ down


def test_swiglu_values_and_gradients_equal_autodiff():
    rng = np.random.default_rng(0)
    N, D, F = 6, 5, 7
    args = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((N, D), (D, F), (D, F), (F, D))]
    w = jnp.asarray(rng.normal(size=(N, D)), jnp.float32)
    x, gate, up, down = (np.asarray(a, np.float64) for a in args)
    g = x @ gate
    want = (g / (1.0 + np.exp(-g)) * (x @ up)) @ down
    np.testing.assert_allclose(swiglu(*args), want, atol=1e-5, rtol=1e-5)

    def objective(f):
        return jax.grad(lambda *a: jnp.sum(w * f(*a)), argnums=(0, 1, 2, 3))

    got, ref = jax.jit(objective(swiglu))(*args), objective(plain)(*args)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
