"""Gradient accumulation is exact: M micro-batches give the one-batch gradient and update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import Sequence, make_batch
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer, make_schedule
from pivotrl_jax.train.step import (
    StepConfig,
    accumulate_gradients,
    grpo_loss,
    make_logprobs_fn,
    make_train_step,
    place_batch,
)

CFG = ModelConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)


def random_sequences(n: int, seed: int, vocab: int = 64) -> list[Sequence]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lp, lr = int(rng.integers(2, 9)), int(rng.integers(1, 8))
        out.append(
            Sequence(
                prompt_ids=tuple(int(x) for x in rng.integers(1, vocab, lp)),
                response_ids=tuple(int(x) for x in rng.integers(1, vocab, lr)),
                response_logprobs=tuple(float(x) for x in -rng.uniform(3.0, 5.0, lr)),
                advantage=float(rng.normal()),
            )
        )
    return out


def setup(loss: LossConfig, with_ref: bool = True):
    policy = st.make_policy(CFG, single_device_mesh())
    params = st.init_params(policy, 0, jnp.float32)
    ref = st.create_reference(policy, params)
    batch = make_batch(random_sequences(8, 1), length_buckets=(16,), row_multiple=4)
    batch = place_batch(batch, policy)
    lp = make_logprobs_fn(policy)
    # pi_old a little off the current policy, so ratios (and clipping) are exercised.
    noise = jax.random.normal(jax.random.key(3), batch.loss_mask.shape) * 0.2
    batch = batch.replace(old_logprobs=lp(params, batch) + noise * batch.loss_mask)
    if with_ref:
        batch = batch.replace(ref_logprobs=lp(ref.params, batch) - 0.1 * batch.loss_mask)
    return policy, params, ref, batch


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_four_micro_batches_give_the_one_batch_gradient(aggregation):
    loss = LossConfig(aggregation=aggregation, beta=0.05, clip_low=0.1, clip_high=0.1)
    policy, params, _, batch = setup(loss)
    obj = grpo_loss(loss)
    g1, p1, m1 = jax.jit(lambda p, b: accumulate_gradients(policy, obj, StepConfig(1), p, b))(
        params, batch
    )
    g4, p4, m4 = jax.jit(lambda p, b: accumulate_gradients(policy, obj, StepConfig(4), p, b))(
        params, batch
    )
    assert float(m1["clip/low_fraction"] + m1["clip/high_fraction"]) > 0  # clipping exercised
    np.testing.assert_allclose(float(p4.count), float(p1.count))
    np.testing.assert_allclose(float(p4.sum), float(p1.sum), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-8)
    for k in m1:
        np.testing.assert_allclose(float(m4[k]), float(m1[k]), rtol=1e-5, atol=1e-7, err_msg=k)


def test_params_after_one_step_match_with_and_without_accumulation():
    """SGD exposes the gradient itself (two steps); Adam (one step) is the recipe's optimizer.

    Adam's first update is lr·g/(|g| + eps): about lr·sign(g), except where |g| ~ eps, where
    float rounding of g shows up as a fraction of lr; hence its small learning rate here.
    """
    loss = LossConfig(beta=0.05)
    policy, params, _, batch = setup(loss)
    host = jax.device_get(params)
    cases = {"sgd": (optax.sgd(0.5), 2), "adam": (make_optimizer(OptimConfig(5e-5)), 1)}
    out = {}
    for m in (1, 4):
        for name, (tx, steps) in cases.items():
            state = st.create_train_state(policy, tx, st.place_params(policy, host, jnp.float32), 0)
            step = make_train_step(policy, tx, grpo_loss(loss), StepConfig(micro_batches=m))
            for _ in range(steps):
                state, metrics = step(state, batch)
            assert int(state.step) == steps and int(metrics["update_skipped"]) == 0
            out[m, name] = jax.device_get(state.params)
    for name in cases:
        moved = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(jax.tree.leaves(out[1, name]), jax.tree.leaves(host))
        )
        assert moved > 2e-5, name  # the update is well above the tolerance
        for a, b in zip(jax.tree.leaves(out[1, name]), jax.tree.leaves(out[4, name])):
            np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)


def test_non_finite_loss_skips_the_update_and_is_counted():
    loss = LossConfig()
    policy, params, _, batch = setup(loss, with_ref=False)
    tx = make_optimizer(OptimConfig(learning_rate=1e-3))
    host = jax.device_get(params)
    state = st.create_train_state(policy, tx, params, seed=0)
    step = make_train_step(
        policy,
        tx,
        grpo_loss(loss),
        StepConfig(micro_batches=2),
        schedule=make_schedule(OptimConfig(learning_rate=1e-3)),
    )
    # NaN at a response token (the loss masks padding, so NaN there would not count).
    t = int(np.argmax(np.asarray(batch.loss_mask[0])))
    bad = batch.replace(advantages=batch.advantages.at[0, t].set(jnp.nan))
    state, metrics = step(state, bad)
    assert int(metrics["update_skipped"]) == 1 and int(state.nonfinite) == 1
    assert int(state.step) == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(host)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert int(jax.tree.leaves(state.opt_state)[0]) == 0  # Adam's count did not advance
    state, metrics = step(state, batch)
    assert int(metrics["update_skipped"]) == 0 and int(state.step) == 1
    assert int(state.nonfinite) == 1
    np.testing.assert_allclose(float(metrics["learning_rate"]), 1e-3)
