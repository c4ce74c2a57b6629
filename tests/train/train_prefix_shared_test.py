"""Prefix-shared GRPO rows (a group's prompt once, its G responses after it) give the log-probs
and gradients of G separate rows, dense and MoE; dropped groups leave no padded rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.models.testing import TINY_CONFIGS, random_model
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import Sequence, make_batch, make_batch_and_layout, response_values
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.step import (
    StepConfig,
    accumulate_gradients,
    grpo_loss,
    make_logprobs_fn,
    place_batch,
)

CONFIGS = {
    "dense": TINY_CONFIGS["dense_untied_mha"],
    "moe": TINY_CONFIGS["moe_topk_norm"],
}


def setup(kind: str):
    """The policy and numpy-initialised parameters (no XLA compile of random initialisers)."""
    config = CONFIGS[kind]
    model = random_model(config, seed=0, weight_scale=0.1)
    return st.make_policy(config, single_device_mesh()), nnx.to_pure_dict(
        nnx.state(model, nnx.Param)
    )


def groups(n_groups: int, group_size: int, seed: int) -> list[Sequence]:
    """GRPO groups: each prompt with `group_size` responses of different lengths."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_groups):
        prompt = tuple(int(x) for x in rng.integers(1, 64, int(rng.integers(1, 12))))
        for _ in range(group_size):
            n = int(rng.integers(1, 7))
            out.append(
                Sequence(
                    prompt,
                    tuple(int(x) for x in rng.integers(1, 64, n)),
                    tuple(float(x) for x in -rng.uniform(1.0, 3.0, n)),
                    float(rng.normal()),
                )
            )
    return out


def test_layout_by_hand():
    """Prompt a b c d with responses x y and z: the module docstring's picture."""
    a, b, c, d, x, y, z = 11, 12, 13, 14, 21, 22, 23
    seqs = [
        Sequence((a, b, c, d), (x, y), (-0.5, -0.25), 1.0),
        Sequence((a, b, c, d), (z,), (-0.75,), -1.0),
    ]
    batch = make_batch(seqs, length_buckets=(10,), share_prefix=True)
    np.testing.assert_array_equal(batch.input_ids, [[a, b, c, d, x, y, d, z, 0, 0]])
    np.testing.assert_array_equal(batch.segment_ids, [[1, 1, 1, 2, 2, 2, 3, 3, 0, 0]])
    np.testing.assert_array_equal(batch.parent_ids, [[0, 0, 0, 1, 1, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(batch.positions, [[0, 1, 2, 3, 4, 5, 3, 4, 0, 0]])
    np.testing.assert_array_equal(batch.loss_mask, [[0, 0, 0, 1, 1, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(batch.targets[0, 3:8], [x, y, 0, z, 0])
    np.testing.assert_array_equal(batch.advantages[0, 3:8], [1, 1, 0, -1, 0])
    np.testing.assert_array_equal(batch.behaviour_logprobs[0, 3:8], [-0.5, -0.25, 0, -0.75, 0])


def test_dropped_groups_are_packed_not_padded_back():
    seqs = groups(8, 4, seed=0)
    full = make_batch(seqs, length_buckets=(64,), share_prefix=True, pack=True, row_multiple=2)
    kept = seqs[:12]  # 3 of 8 groups survive the zero-variance filter
    batch, layout = make_batch_and_layout(
        kept, length_buckets=(64,), share_prefix=True, pack=True, row_multiple=2, max_rows=32
    )
    assert layout.rows < full.input_ids.shape[0]
    assert batch.input_ids.shape[0] == layout.rows + layout.rows % 2  # the multiple, no more
    tokens = int((batch.segment_ids > 0).sum())
    prompts = {s.prompt_ids for s in kept}
    assert tokens == sum(len(p) - 1 for p in prompts) + sum(1 + len(s.response_ids) for s in kept)


def test_a_group_too_long_for_a_row_is_split_with_its_own_prompt_copy():
    seqs = [Sequence((1, 2, 3, 4), (5, 6, 7), (-1.0,) * 3, 0.5) for _ in range(4)]
    batch, layout = make_batch_and_layout(seqs, length_buckets=(11,), share_prefix=True)
    assert layout.rows == 2  # 3 + 4 + 4 = 11 per row: two responses each
    np.testing.assert_array_equal(batch.input_ids[1], [1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7])
    assert float(batch.loss_mask.sum()) == 12


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_shared_logprobs_equal_separate_rows(kind):
    """Against one sequence per row (itself equal to an unpadded forward:
    train_step_padding_test), with and without several groups per row."""
    policy, params = setup(kind)
    seqs = groups(3, 4, seed=1)
    fn = make_logprobs_fn(policy)

    def logprobs(**kw):
        batch, layout = make_batch_and_layout(seqs, length_buckets=(48,), **kw)
        out = np.asarray(fn(params, place_batch(batch, policy)))
        return batch.input_ids.shape[0], response_values(out, seqs, layout)

    _, want = logprobs()
    for kw in (dict(share_prefix=True), dict(share_prefix=True, pack=True)):
        rows, got = logprobs(**kw)
        assert rows < len(seqs)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=str(kw))


@pytest.mark.parametrize(
    "kind, aggregation", [("dense", "token-mean"), ("moe", "seq-mean-token-mean")]
)
def test_shared_loss_and_gradient_equal_separate_rows(kind, aggregation):
    policy, params = setup(kind)
    seqs = groups(3, 4, seed=2)
    loss = LossConfig(aggregation=aggregation, clip_low=0.1, clip_high=0.1)

    def with_old(batch, layout):
        """pi_old a little off the current policy (the clip is exercised), the same offsets on
        the same tokens in both layouts."""
        rng = np.random.default_rng(3)
        old = np.zeros_like(batch.loss_mask)
        for s, r, a in zip(seqs, layout.row, layout.response_start):
            old[r, a : a + len(s.response_ids)] = rng.normal(size=len(s.response_ids)) * 0.2
        return batch, old

    results = []
    for kw in (dict(), dict(share_prefix=True, pack=True)):
        batch, layout = make_batch_and_layout(seqs, length_buckets=(48,), **kw)
        batch, shift = with_old(batch, layout)
        placed = place_batch(batch, policy)
        lp = make_logprobs_fn(policy)(params, placed)
        placed = placed.replace(old_logprobs=lp + jnp.asarray(shift))
        obj = grpo_loss(loss)
        results.append(
            jax.jit(lambda p, b, obj=obj: accumulate_gradients(policy, obj, StepConfig(), p, b))(
                params, placed
            )
        )
    (g_rows, p_rows, m_rows), (g_shared, p_shared, m_shared) = results
    assert float(m_rows["clip/low_fraction"] + m_rows["clip/high_fraction"]) > 0
    np.testing.assert_allclose(float(p_shared.count), float(p_rows.count))
    for key in ("clip/low_fraction", "clip/high_fraction", "ratio/mean"):
        np.testing.assert_allclose(float(m_shared[key]), float(m_rows[key]), atol=1e-6)
    np.testing.assert_allclose(float(p_shared.sum), float(p_rows.sum), atol=1e-5)
    for a, b in zip(jax.tree.leaves(g_rows), jax.tree.leaves(g_shared)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=1e-5)
