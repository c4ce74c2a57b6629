"""KL estimators: hand values, clamps, and their expected gradients as losses.

The expected-gradient tests enumerate every action of a small categorical policy, so the
expectation E_{a~pi_theta}[grad k(a)] is exact, and compare it with the gradient of the
analytic KL divergences.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.train import kl
from pivotrl_jax.train.losses import LossConfig

LN2 = math.log(2.0)


def test_estimators_by_hand():
    # pi_theta(a) = 1/2, pi_0(a) = 1/4: log r = log pi_0 - log pi_theta = -ln 2, r = 1/2.
    #   k1 = ln 2 = 0.693147;  k2 = (ln 2)^2 / 2 = 0.240227;  k3 = 1/2 - 1 + ln 2 = 0.193147.
    lp = jnp.log(jnp.asarray([[0.5]]))
    ref = jnp.log(jnp.asarray([[0.25]]))
    np.testing.assert_allclose(kl.k1(lp, ref), [[LN2]], rtol=1e-6)
    np.testing.assert_allclose(kl.k2(lp, ref), [[0.5 * LN2 * LN2]], rtol=1e-6)
    np.testing.assert_allclose(kl.k3(lp, ref), [[LN2 - 0.5]], rtol=1e-6)
    np.testing.assert_allclose(kl.k3_straight_through(lp, ref), [[LN2 - 0.5]], rtol=1e-6)


def test_k3_clamps_like_low_var_kl():
    # log r = 30 is clipped to 20 and exp(20) - 21 to 10; log r = -30 -> 20 + e^-20 - 1 -> 10;
    # log r = 1 is untouched: e - 2 = 0.718282.
    lp = jnp.asarray([[0.0, 0.0, 0.0]])
    ref = jnp.asarray([[30.0, -30.0, 1.0]])
    np.testing.assert_allclose(kl.k3(lp, ref), [[10.0, 10.0, math.e - 2.0]], rtol=1e-6)


def test_k3_plus_has_k2_gradient():
    rng = np.random.default_rng(1)
    lp = jnp.asarray(rng.normal(size=(3, 5)))
    ref = jnp.asarray(rng.normal(size=(3, 5)))
    g_plus = jax.grad(lambda x: jnp.sum(kl.k3_straight_through(x, ref)))(lp)
    # d/dlp of (lp - ref)^2 / 2 is lp - ref.
    np.testing.assert_allclose(g_plus, lp - ref, rtol=1e-6)


def _expected_grad(estimator, theta, ref_logits):
    """E_{a~pi_theta}[grad_theta k(a)] with a held fixed, enumerating all actions."""
    ref_lp = jax.nn.log_softmax(ref_logits)  # [V]

    def k_of_action(th):  # [V]: k evaluated at each action
        lp = jax.nn.log_softmax(th)
        return estimator(lp[None, :], ref_lp[None, :])[0]

    per_action = jax.jacobian(k_of_action)(theta)  # [V, V]: grad of k(a) for each a
    pi = jax.nn.softmax(theta)
    return pi @ per_action


def _reverse_kl(theta, ref_logits):  # KL(pi_theta || pi_0)
    lp, ref = jax.nn.log_softmax(theta), jax.nn.log_softmax(ref_logits)
    return jnp.sum(jnp.exp(lp) * (lp - ref))


def _forward_kl(theta, ref_logits):  # KL(pi_0 || pi_theta)
    lp, ref = jax.nn.log_softmax(theta), jax.nn.log_softmax(ref_logits)
    return jnp.sum(jnp.exp(ref) * (ref - lp))


@pytest.fixture
def policies():
    rng = np.random.default_rng(2)
    # Small logits so no clamp is active.
    return jnp.asarray(rng.normal(size=6)), jnp.asarray(rng.normal(size=6))


def test_k1_as_a_loss_has_zero_expected_gradient(policies):
    theta, ref = policies
    with jax.enable_x64(True):
        g = _expected_grad(kl.k1, theta.astype(jnp.float64), ref.astype(jnp.float64))
        true = jax.grad(_reverse_kl)(theta.astype(jnp.float64), ref.astype(jnp.float64))
    np.testing.assert_allclose(g, np.zeros(6), atol=1e-12)  # the reference drops out
    assert np.max(np.abs(true)) > 0.05  # while the KL it should follow has a real gradient


def test_k2_and_k3_plus_follow_reverse_kl(policies):
    theta, ref = policies
    with jax.enable_x64(True):
        theta, ref = theta.astype(jnp.float64), ref.astype(jnp.float64)
        true = jax.grad(_reverse_kl)(theta, ref)
        for est in (kl.k2, kl.k3_straight_through):
            np.testing.assert_allclose(_expected_grad(est, theta, ref), true, atol=1e-12)


def test_k3_follows_forward_kl(policies):
    theta, ref = policies
    with jax.enable_x64(True):
        theta, ref = theta.astype(jnp.float64), ref.astype(jnp.float64)
        g = _expected_grad(kl.k3, theta, ref)
        np.testing.assert_allclose(g, jax.grad(_forward_kl)(theta, ref), atol=1e-12)
        # ... which is not the reverse KL's gradient.
        assert np.max(np.abs(g - jax.grad(_reverse_kl)(theta, ref))) > 1e-3


def test_k1_and_k3_are_unbiased_for_the_value(policies):
    theta, ref = policies
    with jax.enable_x64(True):
        theta, ref = theta.astype(jnp.float64), ref.astype(jnp.float64)
        lp, ref_lp = jax.nn.log_softmax(theta), jax.nn.log_softmax(ref)
        pi = jnp.exp(lp)
        true = _reverse_kl(theta, ref)
        for est in (kl.k1, kl.k3):
            np.testing.assert_allclose(pi @ est(lp[None], ref_lp[None])[0], true, rtol=1e-12)


def test_k1_is_refused_as_a_loss():
    with pytest.raises(ValueError, match="zero expected gradient"):
        LossConfig(beta=0.1, kl_estimator="k1")
    LossConfig(beta=0.0, kl_estimator="k1")  # as a metric it is fine
    LossConfig(beta=0.1)  # k3 by default


def test_unknown_estimator_lists_known_names():
    with pytest.raises(KeyError, match="k1, k2, k3, k3\\+"):
        kl.kl_estimate("k4", jnp.zeros((1, 1)), jnp.zeros((1, 1)))
