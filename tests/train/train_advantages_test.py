"""Advantage estimators against hand-worked groups and a NumPy loop over samples."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.train import advantages as adv

# Two groups of G = 3, used by the hand-derived cases below.
#   group 0: r = [1, 0, 0], mean 1/3, deviations (2/3, -1/3, -1/3),
#            sum of squares 6/9, ddof=1 variance 1/3, std 1/sqrt(3)
#   group 1: r = [0, 2, 4], mean 2, deviations (-2, 0, 2), ddof=1 variance 8/2 = 4, std 2
REWARDS = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 4.0]])
S3 = math.sqrt(3.0)
S2 = math.sqrt(2.0)


def test_grpo_by_hand():
    # (r - mean) / std: group 0 -> (2/3)·sqrt(3), -(1/3)·sqrt(3), ...; group 1 -> (-2, 0, 2) / 2.
    want = [[2 / S3, -1 / S3, -1 / S3], [-1.0, 0.0, 1.0]]
    got = adv.grpo(jnp.asarray(REWARDS), eps=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_grpo_population_std_by_hand():
    # ddof=0: group 0 variance (6/9)/3 = 2/9, std sqrt(2)/3, A_0 = (2/3)/(sqrt(2)/3) = sqrt(2);
    # group 1 variance 8/3, std sqrt(8/3), A_2 = 2 / sqrt(8/3) = sqrt(3/2).
    got = adv.grpo(jnp.asarray(REWARDS), eps=0.0, ddof=0)
    want = [[S2, -S2 / 2, -S2 / 2], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)]]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dr_grpo_by_hand():
    got = adv.dr_grpo(jnp.asarray(REWARDS))
    np.testing.assert_allclose(got, [[2 / 3, -1 / 3, -1 / 3], [-2.0, 0.0, 2.0]], rtol=1e-6)


def test_rloo_by_hand():
    # r_i - mean of the other two: group 0 -> 1 - 0, 0 - 1/2, 0 - 1/2;
    # group 1 -> 0 - 3, 2 - 2, 4 - 1.
    got = adv.rloo(jnp.asarray(REWARDS))
    np.testing.assert_allclose(got, [[1.0, -0.5, -0.5], [-3.0, 0.0, 3.0]], rtol=1e-6)


def test_rloo_std_by_hand():
    # group 0, i=0: others [0, 0] have std 0 -> unnormalised 1 - 0 = 1.
    #          i=1: others [1, 0]: mean 1/2, ddof=1 std 1/sqrt(2) -> (0 - 1/2)·sqrt(2) = -1/sqrt(2).
    # group 1, i=0: others [2, 4]: mean 3, std sqrt(2) -> -3/sqrt(2);
    #          i=1: others [0, 4]: mean 2, std 2·sqrt(2) -> 0;  i=2: others [0, 2] -> 3/sqrt(2).
    got = adv.rloo_std(jnp.asarray(REWARDS), eps=0.0)
    want = [[1.0, -1 / S2, -1 / S2], [-3 / S2, 0.0, 3 / S2]]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _numpy_loop(name, rewards, eps, ddof):
    """One sample at a time, straight from the definitions."""
    out = np.zeros_like(rewards)
    p, g = rewards.shape
    for i in range(p):
        group = rewards[i]
        for j in range(g):
            others = np.delete(group, j)
            if name == "grpo":
                out[i, j] = (group[j] - group.mean()) / (group.std(ddof=ddof) + eps)
            elif name == "dr_grpo":
                out[i, j] = group[j] - group.mean()
            elif name == "rloo":
                out[i, j] = group[j] - others.mean()
            else:  # rloo_std
                s = others.std(ddof=ddof) if len(others) > ddof else 0.0
                centred = group[j] - others.mean()
                out[i, j] = centred / (s + eps) if s > 0 else centred
    return out


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "rloo_std"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_matches_numpy_loop(name, ddof):
    rng = np.random.default_rng(0)
    # Binary rewards, as a functional verifier gives (with some all-equal groups), and
    # real-valued ones.
    binary = rng.integers(0, 2, size=(64, 16)).astype(np.float64)
    binary[:3] = 1.0
    binary[3] = 0.0
    real = rng.normal(size=(64, 16))
    for rewards in (binary, real):
        with jax.enable_x64(True):
            got = np.asarray(adv.group_advantages(name, jnp.asarray(rewards), eps=1e-6, ddof=ddof))
        np.testing.assert_allclose(got, _numpy_loop(name, rewards, 1e-6, ddof), atol=1e-10)


def test_leave_one_out_std_g2_is_zero_with_ddof1():
    # One "other" sample has no ddof=1 std: treated as 0, so rloo_std leaves r_i - r_j.
    r = jnp.asarray([[1.0, 0.0]])
    np.testing.assert_allclose(adv.rloo_std(r), [[1.0, -1.0]])


def test_flat_layout_groups_adjacent_samples():
    flat = jnp.asarray(REWARDS.reshape(-1))  # [B] = [P·G]
    got = adv.flat_advantages("rloo", flat, group_size=3)
    np.testing.assert_allclose(got, [1.0, -0.5, -0.5, -3.0, 0.0, 3.0], rtol=1e-6)
    with pytest.raises(ValueError, match="multiple of group_size"):
        adv.flat_advantages("rloo", flat, group_size=4)


def test_zero_variance_groups_are_dropped_and_counted():
    rewards = jnp.asarray(
        [
            [1.0, 1.0, 1.0, 1.0],  # all pass: dropped
            [0.0, 1.0, 0.0, 0.0],  # kept
            [0.0, 0.0, 0.0, 0.0],  # all fail: dropped
            [0.5, 0.5, 0.5, 0.50001],  # tiny but nonzero variance: kept
        ]
    )
    keep, dropped = jax.jit(adv.zero_variance_groups)(rewards)
    np.testing.assert_array_equal(keep, [False, True, False, True])
    assert int(dropped) == 2


def test_unknown_estimator_lists_known_names():
    with pytest.raises(KeyError, match="dr_grpo, grpo, rloo, rloo_std"):
        adv.group_advantages("ppo", jnp.zeros((1, 2)))


def test_advantages_carry_no_gradient():
    # Advantages are constants of the loss: d/dr of anything built from them is 0.
    g = jax.grad(lambda r: jnp.sum(adv.grpo(r) ** 2))(jnp.asarray(REWARDS))
    np.testing.assert_array_equal(g, np.zeros_like(REWARDS))
