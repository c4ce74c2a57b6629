"""Second paths that must agree with the plain forward: KV-cache decoding, padding, packing,
rematerialisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models import KVCache, default_positions, forward_with_cache
from pivotrl_jax.models.testing import TINY_CONFIGS, jitted_logits, random_model, random_tokens

NAMES = ["dense_tied_gqa4", "moe_step2_mlp_only"]
TOL = 2e-5
_step = jax.jit(forward_with_cache, static_argnums=0)


def _model(name, **changes):
    return random_model(TINY_CONFIGS[name].replace(**changes), seed=7)


def _full(model, ids, mask):
    mask = jnp.asarray(mask)
    return jitted_logits(model)(jnp.asarray(ids), default_positions(mask), mask)


@pytest.mark.parametrize("name", NAMES)
def test_prefill_then_decode_equals_full_forward(name):
    model = _model(name)
    graphdef, params = nnx.split(model)
    ids = jnp.asarray(random_tokens(model.config, batch=2, length=12, seed=0))
    pos = jnp.broadcast_to(jnp.arange(12), ids.shape)
    ones = jnp.ones_like(ids)
    cache = KVCache.init(model.config, batch=2, max_length=16)
    logits, cache = _step(graphdef, params, ids[:, :5], pos[:, :5], ones[:, :5], cache)
    got = [logits]
    for t in range(5, 12):
        logits, cache = _step(
            graphdef, params, ids[:, t : t + 1], pos[:, t : t + 1], ones[:, t : t + 1], cache
        )
        got.append(logits)
    assert int(cache.index) == 12
    np.testing.assert_allclose(
        np.concatenate(got, axis=1), _full(model, ids, ones), atol=TOL, rtol=0
    )


@pytest.mark.parametrize("name", NAMES)
def test_left_padded_prompts_decode_like_unpadded(name):
    """Prompts of lengths 7 and 4 in one left-padded prefill, then 3 decode steps per row."""
    model = _model(name)
    graphdef, params = nnx.split(model)
    cfg = model.config
    ids = random_tokens(cfg, batch=2, length=10, seed=1)
    lengths, steps = [7, 4], 3
    prompt = np.full((2, 7), 3, np.int32)  # pad with a real id: only the mask may hide it
    mask = np.zeros((2, 7), np.int32)
    for r, n in enumerate(lengths):
        prompt[r, 7 - n :] = ids[r, :n]
        mask[r, 7 - n :] = 1
    cache = KVCache.init(cfg, batch=2, max_length=7 + steps)
    logits, cache = _step(
        graphdef,
        params,
        jnp.asarray(prompt),
        default_positions(jnp.asarray(mask)),
        jnp.asarray(mask),
        cache,
    )
    last = [np.asarray(logits[:, -1])]
    for s in range(steps):
        nxt = np.array([[ids[r, lengths[r] + s]] for r in range(2)], np.int32)
        pos = np.array([[lengths[r] + s] for r in range(2)], np.int32)
        logits, cache = _step(
            graphdef, params, jnp.asarray(nxt), jnp.asarray(pos), jnp.ones((2, 1), jnp.int32), cache
        )
        last.append(np.asarray(logits[:, 0]))
    for r, n in enumerate(lengths):
        row = np.zeros((1, 10), np.int32)
        row[0, : n + steps] = ids[r, : n + steps]
        row_mask = (np.arange(10) < n + steps).astype(np.int32)[None]
        want = _full(model, row, row_mask)[0, n - 1 : n + steps]
        np.testing.assert_allclose(np.stack([x[r] for x in last]), want, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_padding_never_leaks(name):
    """Row 0 left-padded, row 1 right-padded, both equal to their unpadded selves."""
    model = _model(name)
    ids = random_tokens(model.config, batch=2, length=9, seed=2)
    alone = _full(model, ids, np.ones_like(ids))
    padded = np.full((2, 13), 5, np.int32)  # real-looking ids: only the mask may hide them
    mask = np.zeros((2, 13), np.int32)
    padded[0, 4:], mask[0, 4:] = ids[0], 1
    padded[1, :9], mask[1, :9] = ids[1], 1
    got = _full(model, padded, mask)
    np.testing.assert_allclose(got[0, 4:], alone[0], atol=TOL, rtol=0)
    np.testing.assert_allclose(got[1, :9], alone[1], atol=TOL, rtol=0)


def test_packed_row_equals_separate_rows():
    model = _model("moe_topk_norm")
    a = random_tokens(model.config, batch=1, length=5, seed=3)
    b = random_tokens(model.config, batch=1, length=6, seed=4)
    packed = np.hstack([a, b, np.zeros((1, 2), np.int32)])
    segments = np.array([[1] * 5 + [2] * 6 + [0] * 2], np.int32)
    positions = np.array([list(range(5)) + list(range(6)) + [0, 0]], np.int32)
    got = jitted_logits(model)(packed, positions, segments)
    # Separately: each sequence right-padded to the same 13 tokens (one compiled shape).
    for seq, (lo, hi) in ((a, (0, 5)), (b, (5, 11))):
        row = np.zeros((1, 13), np.int32)
        row[0, : seq.shape[1]] = seq
        alone = _full(model, row, (row != 0) | (np.arange(13) < seq.shape[1]))
        np.testing.assert_allclose(got[:, lo:hi], alone[:, : seq.shape[1]], atol=TOL, rtol=0)


def test_remat_keeps_values_and_gradients():
    ids = jnp.asarray(random_tokens(TINY_CONFIGS["moe_topk_norm"], batch=2, length=6, seed=5))
    pos = jnp.broadcast_to(jnp.arange(6), ids.shape)
    mask = jnp.ones_like(ids)

    @nnx.jit
    def value_and_grad(model):
        return nnx.value_and_grad(lambda m: jnp.mean(m(ids, pos, mask)[0] ** 2))(model)

    plain = value_and_grad(_model("moe_topk_norm"))
    for remat in ("full", "dots"):
        rematted = value_and_grad(_model("moe_topk_norm", remat=remat))
        np.testing.assert_allclose(rematted[0], plain[0], rtol=1e-6)
        for g1, g2 in zip(jax.tree.leaves(rematted[1]), jax.tree.leaves(plain[1])):
            np.testing.assert_allclose(g1, g2, atol=1e-6, rtol=1e-5)


def test_cache_overflow_is_an_error():
    model = _model("dense_tied_gqa4")
    cache = KVCache.init(model.config, batch=1, max_length=4)
    ids = jnp.zeros((1, 5), jnp.int32)
    with pytest.raises(ValueError, match="overflow"):
        model(ids, jnp.arange(5)[None], jnp.ones_like(ids), cache)
