"""Checkpoints: bitwise round trip, last N kept, half-written steps ignored, NaN never saved."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.models.stacks import layer_kinds
from pivotrl_jax.train import checkpoint as checkpoint_lib
from pivotrl_jax.train import state as st
from pivotrl_jax.train.checkpoint import Checkpointer, NonFiniteStateError, state_is_finite
from pivotrl_jax.train.optim import OptimConfig, make_optimizer

CFG = ModelConfig(
    vocab_size=32,
    hidden_size=16,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=8,
)


@pytest.fixture(scope="module")
def setup():
    policy = st.make_policy(CFG, single_device_mesh())
    tx = make_optimizer(OptimConfig())
    state = st.create_train_state(policy, tx, st.init_params(policy, 0, jnp.float32), seed=7)
    # Make the optimizer state non-trivial: a fake update with nonzero moments and count.
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), state.params)
    _, opt = tx.update(grads, state.opt_state, state.params)
    state = state.replace(opt_state=opt, step=jnp.int32(5), nonfinite=jnp.int32(1))
    return policy, tx, state


def test_round_trip_is_bitwise_and_meta_survives(setup, tmp_path):
    policy, tx, state = setup
    meta = {"data_state": {"next_index": 12}, "weight_version": 5, "iteration": 5}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(5, state, meta)
    with Checkpointer(tmp_path) as ckpt:  # a fresh manager, as after a restart
        assert ckpt.latest_step() == 5
        restored, got = ckpt.restore(5, st.abstract_train_state(policy, tx, jnp.float32))
    assert got == meta
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored.step) == 5 and int(restored.nonfinite) == 1


def test_keeps_the_last_n_and_ignores_half_written_steps(setup, tmp_path):
    _, _, state = setup
    with Checkpointer(tmp_path, keep=2) as ckpt:
        for step in (1, 2, 3, 4):
            ckpt.save(step, state, {"iteration": step})
        assert ckpt.all_steps() == [3, 4]
    # What a process killed mid-save leaves: orbax's temporary folder, never a finished step.
    (tmp_path / "5.orbax-checkpoint-tmp-1234").mkdir()
    with Checkpointer(tmp_path, keep=2) as ckpt:
        assert ckpt.latest_step() == 4


def test_non_finite_state_is_never_checkpointed(setup, tmp_path):
    _, _, state = setup
    bad = state.replace(
        params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), state.params)
    )
    assert state_is_finite(state) and not state_is_finite(bad)
    inf_moments = state.replace(
        opt_state=jax.tree.map(
            lambda x: x * jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else x, state.opt_state
        )
    )
    assert not state_is_finite(inf_moments)
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(NonFiniteStateError):
            ckpt.save(1, bad, {})
        assert ckpt.latest_step() is None


def test_finiteness_check_compiles_once_per_state_layout(setup):
    """Checking the same layout again (every checkpoint of a run) reuses the compiled program:
    a program per call would be compiled and kept at every save, and the process would grow."""
    _, _, state = setup
    state_is_finite(state)
    programs = checkpoint_lib._all_finite._cache_size()
    for scale in (1.0, 2.0, 3.0):
        assert state_is_finite(
            state.replace(params=jax.tree.map(lambda x, s=scale: x * s, state.params))
        )
    assert checkpoint_lib._all_finite._cache_size() == programs


def test_per_layer_checkpoint_restores_into_the_stacks(setup, tmp_path):
    """A state saved with one entry per layer (the layout before stacking) restores stacked."""
    policy, tx, state = setup

    def per_layer(tree):  # CFG's two layers are rows 0 and 1 of stack 0
        if not (isinstance(tree, dict) and "stacks" in tree):
            return tree
        rows = {i: jax.tree.map(lambda x, i=i: x[i], tree["stacks"][0]) for i in (0, 1)}
        return {**{k: v for k, v in tree.items() if k != "stacks"}, "layers": rows}

    is_params = lambda t: isinstance(t, dict) and "stacks" in t
    legacy = jax.tree.map(per_layer, state, is_leaf=is_params)
    assert "layers" in legacy.params and "layers" in optax.tree_utils.tree_get(
        legacy.opt_state, "mu"
    )
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, legacy, {"iteration": 3})
    abstract = st.abstract_train_state(policy, tx, jnp.float32)
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(ValueError, match="layer kinds"):
            ckpt.restore(3, abstract)
        restored, _ = ckpt.restore(3, abstract, layer_kinds(CFG))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    leaves = zip(jax.tree.leaves(restored), jax.tree.leaves(state), jax.tree.leaves(abstract))
    for a, b, target in leaves:
        assert a.dtype == b.dtype and a.sharding == target.sharding
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
