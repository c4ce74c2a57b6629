"""The scan over layers computes what the layer-by-layer loop does (logits and gradients) for
every tiny config, rematerialised or not; parent segments in the attention mask; query blocks."""

from __future__ import annotations

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
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(y, x, atol=1e-5, rtol=1e-5)


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


def test_query_blocks_equal_the_full_scores():
    """Column blocks skip only keys no query can see: a packed row with a padded tail and a
    prefix-shared row, blocks of 3 over T = 10, against the full [T, S] scores."""
    seg = jnp.asarray([[1, 1, 1, 2, 2, 2, 3, 3, 0, 0], [1, 1, 1, 1, 2, 2, 2, 3, 3, 3]])
    par = jnp.asarray([[0] * 10, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]])
    pos = jnp.asarray([[0, 1, 2, 0, 1, 2, 0, 1, 0, 0], [0, 1, 2, 3, 4, 5, 6, 4, 5, 6]])
    mask = attention_mask(pos, seg, pos, seg, par)
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (2, 10, 4, 8))
    k, v = (jax.random.normal(key, (2, 10, 2, 8)) for key in keys[1:])
    full, blocked = attend(q, k, v, mask), attend(q, k, v, mask, block=3)
    seen = np.asarray(mask.any(-1))  # padding queries see nothing: their output is unused
    assert seen.sum() == 18
    np.testing.assert_allclose(np.asarray(blocked)[seen], np.asarray(full)[seen], atol=1e-6, rtol=0)
