"""MoE routing and every registered dispatch against a per-token NumPy loop; sharding rules."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.models.moe import DISPATCH, chunked
from pivotrl_jax.models.moe_routing import (
    NOT_REPLAYED,
    RouterStats,
    load_balancing_loss,
    route,
    router_agreement,
)
from pivotrl_jax.models.moe_sorted import blocked_rows, ragged_dot_rows
from pivotrl_jax.models.sharding import ShardingRules, logical_to_spec, make_mesh


def _loop_reference(x, router, gate, up, down, top_k, norm, valid=None, replayed=None):
    """For each token alone: softmax over experts, top-k (or the replayed experts), weighted
    sum of SwiGLU experts; padding tokens (valid False) give 0."""
    B, T, _ = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for b in range(B):
        for t in range(T):
            if valid is not None and not valid[b, t]:
                continue
            z = x[b, t] @ router
            p = np.exp(z - z.max())
            p /= p.sum()
            chosen = np.argsort(-p, kind="stable")[:top_k]
            if replayed is not None and replayed[b, t, 0] >= 0:
                chosen = replayed[b, t]
            w = p[chosen] / (p[chosen].sum() if norm else 1.0)
            for e, we in zip(chosen, w):
                g, u = x[b, t] @ gate[e], x[b, t] @ up[e]
                out[b, t] += we * ((g / (1 + np.exp(-g)) * u) @ down[e])
    return out


def _problem(seed=0, B=2, T=5, D=8, F=6, E=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    router = rng.normal(size=(D, E)).astype(np.float32)
    gate, up = (rng.normal(size=(E, D, F)).astype(np.float32) for _ in range(2))
    down = rng.normal(size=(E, F, D)).astype(np.float32)
    return rng, x, router, gate, up, down


@pytest.mark.parametrize("dispatch", DISPATCH.names())
@pytest.mark.parametrize("norm", [True, False])
def test_dispatch_matches_per_token_loop(dispatch, norm):
    _, x, router, gate, up, down = _problem()
    R = 2
    weights, stats = route(jnp.asarray(x), jnp.asarray(router), R, norm)
    assert weights.dtype == jnp.float32 and stats.experts.shape == (2, 5, R)
    got = DISPATCH.get(dispatch)(
        jnp.asarray(x), weights, stats.experts, jnp.asarray(gate), jnp.asarray(up),
        jnp.asarray(down),
    )  # fmt: skip
    want = _loop_reference(x, router, gate, up, down, R, norm)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dispatch", DISPATCH.names())
def test_padding_and_replay_reach_every_dispatch(dispatch):
    """Padding tokens get no expert (0 out); replayed tokens use the replayed experts."""
    rng, x, router, gate, up, down = _problem(seed=1, B=3, T=7)
    R, E = 2, router.shape[1]
    valid = rng.random((3, 7)) > 0.3
    replayed = np.full((3, 7, R), NOT_REPLAYED, np.int32)
    for b, t in [(0, 1), (1, 4), (2, 0), (2, 6)]:
        replayed[b, t] = rng.choice(E, R, replace=False)
    weights, stats = route(
        jnp.asarray(x), jnp.asarray(router), R, True, jnp.asarray(valid), jnp.asarray(replayed)
    )
    got = DISPATCH.get(dispatch)(
        jnp.asarray(x), weights, stats.experts, jnp.asarray(gate), jnp.asarray(up),
        jnp.asarray(down),
    )  # fmt: skip
    want = _loop_reference(x, router, gate, up, down, R, True, valid, replayed)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert np.all(np.asarray(stats.experts)[~valid] == E)


def test_route_hand_worked():
    # One token, logits ln([1, 2, 1]) -> p = [1/4, 1/2, 1/4]; top-2 picks expert 1 then 0.
    x = jnp.asarray([[[1.0]]])
    router = jnp.log(jnp.asarray([[1.0, 2.0, 1.0]]))
    w, stats = route(x, router, 2, norm_topk_prob=False)
    np.testing.assert_allclose(w[0, 0], [0.5, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(stats.experts[0, 0], [1, 0])
    w, _ = route(x, router, 2, norm_topk_prob=True)
    np.testing.assert_allclose(w[0, 0], [2 / 3, 1 / 3], rtol=1e-6)
    # Replaying experts (2, 0): weights p[2], p[0] = 1/4, 1/4, renormalised to 1/2, 1/2; the
    # router's own choice is still reported.
    w, stats = route(x, router, 2, True, replayed=jnp.asarray([[[2, 0]]]))
    np.testing.assert_allclose(w[0, 0], [0.5, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(stats.experts[0, 0], [2, 0])
    np.testing.assert_array_equal(stats.chosen[0, 0], [1, 0])
    # Statistics: load counts the chosen experts, prob_sum the probabilities, of real tokens.
    np.testing.assert_allclose(stats.load, [1, 1, 0])
    np.testing.assert_allclose(stats.prob_sum, [0.25, 0.5, 0.25], rtol=1e-6)
    assert float(stats.tokens) == 1.0


def test_load_balancing_loss_and_agreement_hand_worked():
    # Two layers, E = 2: loads (2, 0), (1, 1); prob sums (1.5, 0.5), (1, 1); 2 tokens each.
    # f = (3, 1) / 4, P = (2.5, 1.5) / 4  ->  L = 2 * (3 * 2.5 + 1 * 1.5) / 16 = 1.125.
    stats = RouterStats(
        experts=jnp.zeros((2, 1, 2, 1), jnp.int32),
        chosen=jnp.zeros((2, 1, 2, 1), jnp.int32),
        load=jnp.asarray([[2.0, 0.0], [1.0, 1.0]]),
        prob_sum=jnp.asarray([[1.5, 0.5], [1.0, 1.0]]),
        tokens=jnp.asarray([2.0, 2.0]),
    )
    assert float(load_balancing_loss(stats)) == pytest.approx(1.125)
    # Agreement: slot-wise membership of replayed experts in the router's own top-2; padding
    # (chosen == E) and unreplayed slots do not count.
    chosen = jnp.asarray([[0, 1], [2, 3], [4, 4]])
    replayed = jnp.asarray([[1, 0], [2, 0], [1, 2]])
    hits, slots = router_agreement(chosen, replayed, num_experts=4)
    assert (float(hits), float(slots)) == (3.0, 4.0)
    hits, slots = router_agreement(chosen, jnp.full((3, 2), NOT_REPLAYED), num_experts=4)
    assert (float(hits), float(slots)) == (0.0, 0.0)


@pytest.mark.parametrize("grouped", [ragged_dot_rows, blocked_rows])
def test_grouped_ffn_computes_each_row_with_its_expert_and_no_expert_rows_as_zero(grouped):
    rng = np.random.default_rng(3)
    G, D, F = 3, 4, 5
    xs = rng.normal(size=(11, D)).astype(np.float32)
    gate, up = (rng.normal(size=(G, D, F)).astype(np.float32) for _ in range(2))
    down = rng.normal(size=(G, F, D)).astype(np.float32)
    ids = np.asarray([2, 0, 3, 2, 2, 0, 3, 2, 0, 2, 3], np.int32)  # 3 rows of no expert (id G)
    got = np.asarray(grouped(*map(jnp.asarray, (xs, ids, gate, up, down))))
    for m, e in enumerate(ids):
        if e == G:
            np.testing.assert_array_equal(got[m], 0.0)
            continue
        h = xs[m] @ gate[e]
        want = (h / (1 + np.exp(-h)) * (xs[m] @ up[e])) @ down[e]
        np.testing.assert_allclose(got[m], want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("block", [2, 4, 16])
def test_blocked_matches_ragged_dot_in_values_and_gradients(block):
    """Blocks of 2 to 16 rows (groups of 0 to 7 rows straddle them, unused blocks at the end):
    values and gradients equal the ragged_dot form's."""
    rng = np.random.default_rng(4)
    G, D, F = 4, 6, 5
    ids = jnp.asarray(rng.permutation(np.repeat(np.arange(G + 1), [3, 0, 7, 2, 2])), jnp.int32)
    xs = jnp.asarray(rng.normal(size=(14, D)).astype(np.float32))
    ws = tuple(jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in
               [(G, D, F), (G, D, F), (G, F, D)])  # fmt: skip

    def loss(grouped, xs, *ws):
        return jnp.mean(jnp.sin(grouped(xs, ids, *ws)))

    small = lambda *a: blocked_rows(*a, block=block)
    grad = lambda f: jax.value_and_grad(lambda *a: loss(f, *a), argnums=(0, 1, 2, 3))(xs, *ws)
    for a, b in zip(jax.tree.leaves(grad(small)), jax.tree.leaves(grad(ragged_dot_rows))):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_chunked_dispatch_equals_whole_rows():
    _, x, router, gate, up, down = _problem(seed=5, B=2, T=12)
    weights, stats = route(jnp.asarray(x), jnp.asarray(router), 2, True)
    args = (jnp.asarray(x), weights, stats.experts, *map(jnp.asarray, (gate, up, down)))
    whole = DISPATCH.get("blocked")(*args)
    np.testing.assert_allclose(chunked(DISPATCH.get("blocked"), 4)(*args), whole, atol=1e-5)
    with pytest.raises(ValueError, match="does not divide"):
        chunked(DISPATCH.get("blocked"), 5)(*args)


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


def test_embed_shards_over_expert_where_experts_do_not_use_it():
    class FakeMesh:
        shape: ClassVar = {"data": 1, "fsdp": 2, "tensor": 1, "expert": 4}

    rules = ShardingRules()
    # Attention and embeddings: ZeRO over fsdp x expert (the size-1 tensor axis is still named
    # when it is a dimension's only axis).
    assert tuple(logical_to_spec(("embed", "heads", "head_dim"), (8, 4, 2), FakeMesh, rules)) == (
        ("fsdp", "expert"), "tensor", None,
    )  # fmt: skip
    # Experts take `expert`; their embed dimension keeps fsdp only.
    spec = logical_to_spec(("experts", "embed", "mlp"), (8, 8, 6), FakeMesh, rules)
    assert tuple(spec) == ("expert", "fsdp", "tensor")

    class NoFsdp:
        shape: ClassVar = {"data": 2, "fsdp": 1, "tensor": 1, "expert": 4}

    # A size-1 axis never joins another one on the same dimension.
    assert tuple(logical_to_spec(("embed",), (8,), NoFsdp, rules)) == ("expert",)


def test_unknown_logical_axis_is_named():
    mesh = make_mesh((1,), ("fsdp",))
    with pytest.raises(KeyError, match="'width'"):
        logical_to_spec(("width",), (4,), mesh, ShardingRules())
