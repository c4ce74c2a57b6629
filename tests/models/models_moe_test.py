"""MoE routing and every registered dispatch against a per-token NumPy loop; sharding rules."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.models.moe import DISPATCH, route
from pivotrl_jax.models.sharding import ShardingRules, logical_to_spec, make_mesh


def _loop_reference(x, router, gate, up, down, top_k, norm):
    """For each token alone: softmax over experts, top-k, weighted sum of SwiGLU experts."""
    B, T, _ = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for b in range(B):
        for t in range(T):
            z = x[b, t] @ router
            p = np.exp(z - z.max())
            p /= p.sum()
            chosen = np.argsort(-p, kind="stable")[:top_k]
            w = p[chosen] / (p[chosen].sum() if norm else 1.0)
            for e, we in zip(chosen, w):
                g, u = x[b, t] @ gate[e], x[b, t] @ up[e]
                out[b, t] += we * ((g / (1 + np.exp(-g)) * u) @ down[e])
    return out


@pytest.mark.parametrize("dispatch", DISPATCH.names())
@pytest.mark.parametrize("norm", [True, False])
def test_dispatch_matches_per_token_loop(dispatch, norm):
    rng = np.random.default_rng(0)
    B, T, D, F, E, R = 2, 5, 8, 6, 5, 2
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    router = rng.normal(size=(D, E)).astype(np.float32)
    gate, up = (rng.normal(size=(E, D, F)).astype(np.float32) for _ in range(2))
    down = rng.normal(size=(E, F, D)).astype(np.float32)
    weights, experts = route(jnp.asarray(x), jnp.asarray(router), R, norm)
    assert weights.dtype == jnp.float32 and experts.shape == (B, T, R)
    got = DISPATCH.get(dispatch)(
        jnp.asarray(x), weights, experts, jnp.asarray(gate), jnp.asarray(up), jnp.asarray(down)
    )
    want = _loop_reference(x, router, gate, up, down, R, norm)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_route_hand_worked():
    # One token, logits ln([1, 2, 1]) -> p = [1/4, 1/2, 1/4]; top-2 picks expert 1 then 0.
    x = jnp.asarray([[[1.0]]])
    router = jnp.log(jnp.asarray([[1.0, 2.0, 1.0]]))
    w, e = route(x, router, 2, norm_topk_prob=False)
    np.testing.assert_allclose(w[0, 0], [0.5, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(e[0, 0], [1, 0])
    w, _ = route(x, router, 2, norm_topk_prob=True)
    np.testing.assert_allclose(w[0, 0], [2 / 3, 1 / 3], rtol=1e-6)


def test_rules_replicate_what_does_not_divide():
    rules = ShardingRules()

    class FakeMesh:  # logical_to_spec reads only the axis sizes
        shape: ClassVar = {"fsdp": 2, "tensor": 4, "data": 1, "expert": 1}

    spec = logical_to_spec(("embed", "kv_heads", "head_dim"), (8, 2, 4), FakeMesh, rules)
    assert tuple(spec) == ("fsdp", None, None)
    spec = logical_to_spec(("vocab", "embed"), (12, 6), FakeMesh, rules)
    assert tuple(spec) == ("tensor", "fsdp")
    # A mesh axis is used once per array: a second "mlp" dimension stays whole.
    spec = logical_to_spec(("mlp", "mlp"), (8, 8), FakeMesh, rules)
    assert tuple(spec) == ("tensor", None)
    # Several mesh axes on one dimension, each kept only while the product divides.
    spec = logical_to_spec(
        ("batch", None), (4, 3), FakeMesh, ShardingRules(batch=("fsdp", "tensor"))
    )
    assert tuple(spec) == ("fsdp", None)


def test_unknown_logical_axis_is_named():
    mesh = make_mesh((1,), ("fsdp",))
    with pytest.raises(KeyError, match="'width'"):
        logical_to_spec(("width",), (4,), mesh, ShardingRules())
