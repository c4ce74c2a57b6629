"""Train state: the reference owns its buffers and stays frozen; master and reference dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import Sequence, make_batch
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer, make_schedule
from pivotrl_jax.train.step import StepConfig, grpo_loss, make_train_step, place_batch

CFG = ModelConfig(
    vocab_size=32,
    hidden_size=16,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=8,
)


def batch(policy):
    seqs = [
        Sequence((1, 2, 3), (4, 5), (-3.0, -3.0), 1.0),
        Sequence((6, 7), (8, 9, 10), (-3.0, -3.0, -3.0), -1.0),
    ]
    return place_batch(make_batch(seqs, length_buckets=(8,)), policy)


def test_reference_survives_donating_updates_and_is_unchanged():
    policy = st.make_policy(CFG, single_device_mesh())
    params = st.init_params(policy, 0, jnp.float32)
    host = jax.device_get(params)
    ref = st.create_reference(policy, params, "float32")
    ref16 = st.create_reference(policy, params, "bfloat16")
    tx = make_optimizer(OptimConfig(learning_rate=1e-2))
    state = st.create_train_state(policy, tx, params, seed=0)
    step = make_train_step(policy, tx, grpo_loss(LossConfig()), StepConfig())
    b = batch(policy)
    for _ in range(3):
        state, _ = step(state, b)
    for r, r16, h in zip(
        jax.tree.leaves(ref.params), jax.tree.leaves(ref16.params), jax.tree.leaves(host)
    ):
        np.testing.assert_array_equal(np.asarray(r), h)
        assert r16.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(r16), np.asarray(jnp.asarray(h, jnp.bfloat16)))
    moved = max(
        float(np.max(np.abs(np.asarray(p) - h)))
        for p, h in zip(jax.tree.leaves(state.params), jax.tree.leaves(host))
    )
    assert moved > 1e-3


def test_bfloat16_master_weights_and_abstract_state():
    policy = st.make_policy(CFG, single_device_mesh())
    optim = OptimConfig(
        learning_rate=1e-2,
        master_dtype="bfloat16",
        schedule="warmup_cosine",
        warmup_steps=2,
        decay_steps=10,
    )
    tx = make_optimizer(optim)
    state = st.create_train_state(policy, tx, st.init_params(policy, 0, optim.dtype), seed=0)
    abstract = st.abstract_train_state(policy, tx, optim.dtype)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(state)):
        assert (a.shape, a.dtype) == (s.shape, s.dtype)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.params))
    step = make_train_step(
        policy,
        tx,
        grpo_loss(LossConfig()),
        StepConfig(micro_batches=2),
        make_schedule(optim),
        master_dtype=optim.dtype,
    )
    lrs = []
    for _ in range(3):
        state, m = step(state, batch(policy))
        lrs.append(float(m["learning_rate"]))
        assert int(m["update_skipped"]) == 0
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.params))
    np.testing.assert_allclose(lrs[:2], [0.0, 5e-3], rtol=1e-6)  # linear warm-up from 0
