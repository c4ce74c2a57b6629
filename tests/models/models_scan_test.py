"""The scan over layers computes what the layer-by-layer loop does (logits and gradients) for
every tiny config, rematerialised or not; parent segments in the attention mask; query blocks."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models.attention import attend, attention_mask
from pivotrl_jax.models.testing import TINY_CONFIGS, random_model, random_tokens
from pivotrl_jax.models.transformer import forward, layer_groups


@pytest.mark.parametrize(
    "kinds, runs",
    [
        ([0, 0, 0, 0], [(0, 1, 4)]),
        ([0, 1, 1, 1], [(0, 1, 1), (1, 1, 3)]),
        ([0, 1, 0, 1, 0, 1], [(0, 2, 3)]),
        ([0, 1, 0, 0], [(0, 1, 1), (1, 1, 1), (2, 1, 2)]),
        ([0], [(0, 1, 1)]),
    ],
)
def test_layer_groups_cover_every_layer_in_order(kinds, runs):
    assert layer_groups(kinds) == runs
    covered = [s + r * p + j for s, p, n in runs for r in range(n) for j in range(p)]
    assert covered == list(range(len(kinds)))


@pytest.mark.parametrize(
    "name, remat",
    [
        ("dense_tied_gqa4", "none"),
        ("moe_step2_mlp_only", "none"),  # runs of one, a run of two dense layers
        ("moe_mlp_only_first", "full"),
    ],
)
def test_scan_equals_the_layer_loop(name, remat):
    config = TINY_CONFIGS[name]
    model = random_model(config.replace(scan_layers=False), seed=1, weight_scale=0.1)
    loop_def, params = nnx.split(model)
    scan_def = nnx.split(random_model(config.replace(scan_layers=True, remat=remat)))[0]
    ids = jnp.asarray(random_tokens(config, batch=2, length=7, seed=2))
    pos = jnp.broadcast_to(jnp.arange(7), (2, 7))
    seg = jnp.asarray([[1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 0, 0]])

    def loss(p, graphdef):
        logits = forward(graphdef, p, ids, pos, seg)
        return jnp.sum(jnp.tanh(logits)), logits

    run = jax.jit(jax.grad(loss, has_aux=True), static_argnums=1)
    (ga, a), (gb, b) = run(params, loop_def), run(params, scan_def)
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    # The attention's hand-written backward pass sums in another order inside the scan than
    # layer by layer: float32 rounding, relative to each gradient's largest entry (gradients of
    # the norm scales reach ~1e2 here, where single entries cancel to ~1e-1).
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(y, x, atol=1e-5 * float(np.abs(x).max()), rtol=1e-5)


def test_parent_segments_by_hand():
    """Prompt (segment 1) and two responses (2, 3) with parent 1: each response sees the prompt
    and itself, never its sibling; the prompt sees neither response."""
    seg = jnp.asarray([[1, 1, 2, 2, 3, 3, 0]])
    par = jnp.asarray([[0, 0, 1, 1, 1, 1, 0]])
    pos = jnp.asarray([[0, 1, 2, 3, 2, 3, 0]])
    got = np.asarray(attention_mask(pos, seg, pos, seg, par)[0]).astype(int)
    want = [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("block", [0, 3, 4])
def test_attention_and_its_gradient_equal_jax_dot_product_attention(block):
    """Against jax.nn.dot_product_attention (XLA) on a packed row with a padded tail and a
    prefix-shared row; query blocks of 3 or 4 over T = 10 skip only keys no query sees."""
    seg = jnp.asarray([[1, 1, 1, 2, 2, 2, 3, 3, 0, 0], [1, 1, 1, 1, 2, 2, 2, 3, 3, 3]])
    par = jnp.asarray([[0] * 10, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]])
    pos = jnp.asarray([[0, 1, 2, 0, 1, 2, 0, 1, 0, 0], [0, 1, 2, 3, 4, 5, 6, 4, 5, 6]])
    mask = attention_mask(pos, seg, pos, seg, par)
    seen = mask.any(-1)[:, :, None, None]  # padding queries see nothing: their output is unused
    keys = jax.random.split(jax.random.key(0), 4)
    q, w = (jax.random.normal(key, (2, 10, 4, 8)) for key in keys[:2])
    k, v = (jax.random.normal(key, (2, 10, 2, 8)) for key in keys[2:])

    def reference(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], implementation="xla")

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.where(seen, fn(q, k, v) * w, 0.0))

    ours = functools.partial(attend, mask=mask, block=block)
    np.testing.assert_allclose(
        jnp.where(seen, ours(q, k, v), 0), jnp.where(seen, reference(q, k, v), 0), atol=1e-6
    )
    want = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
    got = jax.jit(jax.grad(loss(ours), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, atol=1e-5)
