"""Padding never reaches the MoE router: the outputs and the router statistics at real tokens do not
change with the amount (or place) of padding, for every dispatch. The reference is each sequence
run alone, unpadded."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models import default_positions
from pivotrl_jax.models.testing import TINY_CONFIGS, random_model
from pivotrl_jax.models.transformer import forward_with_routing

LENGTHS = (5, 9, 3)


def _layouts(seqs):
    """(name, ids, mask, where) for: one row each with a little right padding, with much left
    padding, and all sequences packed in one row; where[k] = (row, start) of sequence k."""
    out = []
    for name, T, left in (("right16", 16, False), ("left40", 40, True)):
        ids = np.zeros((len(seqs), T), np.int32)
        mask = np.zeros((len(seqs), T), np.int32)
        where = []
        for r, s in enumerate(seqs):
            start = T - len(s) if left else 0
            ids[r, start : start + len(s)] = s
            mask[r, start : start + len(s)] = 1
            where.append((r, start))
        out.append((name, ids, mask, where))
    T = sum(map(len, seqs)) + 7  # packed, with padding after the last sequence
    ids, mask, where, start = np.zeros((1, T), np.int32), np.zeros((1, T), np.int32), [], 0
    for k, s in enumerate(seqs):
        ids[0, start : start + len(s)] = s
        mask[0, start : start + len(s)] = k + 1
        where.append((0, start))
        start += len(s)
    out.append(("packed", ids, mask, where))
    return out


def _positions(mask):
    """Positions restarting at 0 in each segment (default_positions counts per row)."""
    pos = np.zeros_like(mask)
    for r in range(mask.shape[0]):
        count: dict[int, int] = {}
        for t, seg in enumerate(mask[r]):
            if seg:
                pos[r, t] = count.get(seg, 0)
                count[seg] = pos[r, t] + 1
    return pos


@pytest.mark.parametrize("dispatch", ["dense", "expert_parallel"])
def test_real_tokens_do_not_see_padding(dispatch):
    config = TINY_CONFIGS["moe_topk_norm"].replace(moe_dispatch=dispatch)
    graphdef, params = nnx.split(random_model(config, seed=3))
    run = jax.jit(lambda ids, pos, mask: forward_with_routing(graphdef, params, ids, pos, mask))
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, config.vocab_size, n).astype(np.int32) for n in LENGTHS]

    alone = []  # each sequence unpadded in its own call: the reference
    for s in seqs:
        ids = jnp.asarray(s[None])
        logits, _, stats = run(ids, default_positions(jnp.ones_like(ids)), jnp.ones_like(ids))
        alone.append((np.asarray(logits[0]), jax.tree.map(np.asarray, stats)))
    load = sum(st.load for _, st in alone)  # [L, E] over every real token
    prob_sum = sum(st.prob_sum for _, st in alone)
    tokens = sum(st.tokens for _, st in alone)

    for name, ids, mask, where in _layouts(seqs):
        logits, _, stats = run(jnp.asarray(ids), jnp.asarray(_positions(mask)), jnp.asarray(mask))
        logits, stats = np.asarray(logits), jax.tree.map(np.asarray, stats)
        for (r, start), s, (want, want_stats) in zip(where, seqs, alone):
            span = slice(start, start + len(s))
            np.testing.assert_allclose(logits[r, span], want, atol=1e-5, err_msg=name)
            np.testing.assert_array_equal(stats.experts[:, r, span], want_stats.experts[:, 0])
        # The statistics count real tokens only, so the padding leaves them as they were.
        np.testing.assert_array_equal(stats.tokens, tokens, err_msg=name)
        np.testing.assert_array_equal(stats.load, load, err_msg=name)
        np.testing.assert_allclose(stats.prob_sum, prob_sum, rtol=1e-5, err_msg=name)
        # Padding goes to no expert.
        assert np.all(stats.experts[:, mask == 0] == config.num_experts), name


def test_padding_takes_no_expert_rows():
    """A padded batch gives every expert exactly the rows of its real tokens: the sorted
    dispatches' group sizes do not grow with padding."""
    config = TINY_CONFIGS["moe_topk_norm"]
    graphdef, params = nnx.split(random_model(config, seed=3))
    ids = jnp.zeros((2, 32), jnp.int32).at[:, :4].set(7)
    mask = jnp.zeros((2, 32), jnp.int32).at[:, :4].set(1)
    _, _, stats = forward_with_routing(graphdef, params, ids, default_positions(mask), mask)
    E, R = config.num_experts, config.num_experts_per_tok
    per_expert = np.stack([np.bincount(e.reshape(-1), minlength=E + 1) for e in stats.experts])
    assert np.all(per_expert[:, :E].sum(axis=1) == 8 * R)  # 8 real tokens x R, per layer
    assert np.all(per_expert[:, E] == 56 * R)  # the 56 padding tokens: "no expert"
