"""The MoE router in training: frozen by default (no gradient, no update, no optimizer state),
trainable with the switch; the load-balancing loss adds coef * L_aux; routing recorded by the JAX
engine and replayed in the trainer's forward reproduces the engine's log-probs exactly, with
router agreement 1, and the replayed ids are really used."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pivotrl_jax.models.moe_routing import load_balancing_loss, router_agreement
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.models.testing import TINY_CONFIGS, random_model
from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import Sequence, make_batch
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.optim import OptimConfig, make_optimizer, policy_config
from pivotrl_jax.train.step import (
    StepConfig,
    grpo_loss,
    make_train_step,
    place_batch,
    policy_logprobs,
)

CONFIG = TINY_CONFIGS["moe_topk_norm"]

pytestmark = pytest.mark.slow  # each test compiles a train step (40-200 s on 2 cores)


def _sequences(rng, n=4):
    return [
        Sequence(
            tuple(int(x) for x in rng.integers(1, CONFIG.vocab_size, 6)),
            tuple(int(x) for x in rng.integers(1, CONFIG.vocab_size, 5)),
            tuple(float(x) for x in -rng.uniform(3.0, 5.0, 5)),
            float(rng.normal()),
        )
        for _ in range(n)
    ]


def _trained(freeze: bool, steps: int = 2, aux: float = 0.0):
    optim = OptimConfig(learning_rate=1e-2, freeze_router=freeze)
    policy = st.make_policy(policy_config(CONFIG, optim), single_device_mesh())
    params = nnx.to_pure_dict(nnx.state(random_model(CONFIG, seed=0), nnx.Param))
    before = jax.tree.map(np.asarray, params)
    tx = make_optimizer(optim)
    state = st.create_train_state(policy, tx, st.place_params(policy, params, jnp.float32), 0)
    step = make_train_step(policy, tx, grpo_loss(LossConfig()), StepConfig(router_aux_coef=aux))
    batch = place_batch(
        make_batch(_sequences(np.random.default_rng(1)), length_buckets=(16,)), policy
    )
    for _ in range(steps):
        state, metrics = step(state, batch)
    return before, state, metrics


def _at(tree, path):
    for k in path:
        tree = tree[k.key]
    return np.asarray(tree)


def _router_paths(tree):
    return [
        p
        for p, _ in jax.tree_util.tree_leaves_with_path(tree)
        if "router" in jax.tree_util.keystr(p)
    ]


def test_frozen_router_gets_no_update_and_no_optimizer_state():
    before, state, _ = _trained(freeze=True)
    routers = _router_paths(state.params)
    # Both MoE layers' routers are the rows of one stacked [2, D, E] parameter.
    assert len(routers) == 1
    assert _at(before, routers[0]).shape == (2, CONFIG.hidden_size, CONFIG.num_experts)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
        moved = not np.array_equal(np.asarray(leaf), _at(before, path))
        assert moved != ("router" in jax.tree_util.keystr(path)), jax.tree_util.keystr(path)
    # Adam keeps moments only for trained parameters: one mu and one nu per non-router leaf.
    n_params = len(jax.tree.leaves(state.params))
    moments = [x for x in jax.tree.leaves(state.opt_state) if np.ndim(x) > 0]
    assert len(moments) == 2 * (n_params - len(routers))
    assert not any(x.shape[1:] == (CONFIG.hidden_size, CONFIG.num_experts) for x in moments)


def test_router_trains_with_the_switch_off():
    before, state, _ = _trained(freeze=False)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
        assert not np.array_equal(np.asarray(leaf), _at(before, path)), path
    moments = [x for x in jax.tree.leaves(state.opt_state) if np.ndim(x) > 0]
    assert len(moments) == 2 * len(jax.tree.leaves(state.params))


def test_frozen_router_has_zero_gradient_and_others_do_not():
    optim = OptimConfig(freeze_router=True)
    policy = st.make_policy(policy_config(CONFIG, optim), single_device_mesh())
    params = nnx.to_pure_dict(nnx.state(random_model(CONFIG, seed=0), nnx.Param))
    batch = jax.tree.map(
        jnp.asarray, make_batch(_sequences(np.random.default_rng(2)), length_buckets=(16,))
    )

    def loss(p):
        lp, _, stats = policy_logprobs(policy.graphdef, p, batch, False)
        return jnp.sum(lp * batch.loss_mask) + load_balancing_loss(stats)

    grads = jax.grad(loss)(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        is_router = "router" in jax.tree_util.keystr(path)
        assert (float(jnp.abs(g).max()) == 0.0) == is_router, jax.tree_util.keystr(path)


def test_load_balancing_loss_enters_the_loss_with_its_coefficient():
    _, _, m0 = _trained(freeze=False, steps=1, aux=0.0)
    _, _, m1 = _trained(freeze=False, steps=1, aux=0.5)
    aux = float(m0["moe/load_balancing_loss"])
    assert aux > 1.0  # E * sum f P >= R-ish for any routing; nonzero
    assert float(m1["loss"]) == pytest.approx(float(m0["loss"]) + 0.5 * aux, rel=1e-5)
    assert "moe/router_agreement" not in m0  # nothing replayed


def test_replayed_jax_engine_routing_reproduces_its_logprobs():
    model = random_model(CONFIG, seed=0)
    engine = JaxEngine(model, options=JaxEngineOptions(record_routing=True))
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8, 9]]
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=6, seed=0), n=2)
    comps = [c for g in groups for c in g]
    L, R = CONFIG.num_hidden_layers, CONFIG.num_experts_per_tok
    for p, g in zip(prompts, groups):
        for c in g:
            assert c.routed_experts.shape == (len(p) + len(c.token_ids) - 1, L, R)
    seqs = [
        Sequence(tuple(p), c.token_ids, c.logprobs, 1.0, routed_experts=c.routed_experts)
        for p, g in zip(prompts, groups)
        for c in g
    ]
    policy = st.make_policy(CONFIG, single_device_mesh())
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    # A prompt computed once for its samples (prefix-shared rows) replays the same routing.
    shared = jax.tree.map(jnp.asarray, make_batch(seqs, length_buckets=(32,), share_prefix=True))
    lp, _, _ = policy_logprobs(policy.graphdef, params, shared, False)
    np.testing.assert_allclose(lp * shared.loss_mask, shared.behaviour_logprobs, atol=1e-5)
    batch = jax.tree.map(jnp.asarray, make_batch(seqs, length_buckets=(16,)))
    lp, _, stats = policy_logprobs(policy.graphdef, params, batch, False)
    np.testing.assert_allclose(lp * batch.loss_mask, batch.behaviour_logprobs, atol=1e-5)
    # The trainer's own router agrees with the engine's everywhere (same weights, same dtype).
    hits, slots = router_agreement(stats.chosen, jnp.moveaxis(batch.routed_experts, 2, 0), 4)
    assert float(slots) == sum(c.routed_experts.size for c in comps)
    assert float(hits) == float(slots)
    # Replayed ids are used: shifting every replayed expert changes the log-probs.
    shifted = jnp.where(batch.routed_experts >= 0, (batch.routed_experts + 1) % 4, -1)
    lp2, _, _ = policy_logprobs(
        policy.graphdef, params, batch.replace(routed_experts=shifted), False
    )
    assert float(jnp.abs((lp2 - lp) * batch.loss_mask).max()) > 1e-2
