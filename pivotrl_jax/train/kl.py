"""Per-token estimators of KL(pi_theta || pi_0) from sampled-token log-probs.

Tokens a ~ pi_theta (on-policy). With log r = log pi_0(a) - log pi_theta(a) (J. Schulman,
"Approximating KL divergence", 2020):

    k1 = -log r                     unbiased for KL, high variance, can be negative
    k2 = (log r)^2 / 2              biased, always >= 0
    k3 = (r - 1) - log r            unbiased for KL, low variance, always >= 0
    k3+ = k3 in value, k2 in gradient (straight-through)

k3 follows verl's "low_var_kl": log r is clamped to [-20, 20] before exp and the estimate
to [-10, 10], so one badly mismatched token cannot blow up the loss.

What each estimator does *as a loss* (differentiated through log pi_theta(a) with the
sampled token a held fixed, which is what backprop on the sampled tokens does):

* k1: grad = grad log pi_theta(a), and E_{a~pi_theta}[grad log pi_theta(a)]
  = sum_a grad pi_theta(a) = grad 1 = 0. The expected gradient is zero whatever pi_0 is:
  the reference drops out entirely and the term only adds noise. The true
  grad KL(pi_theta || pi_0) = E[(log pi_theta(a) - log pi_0(a)) grad log pi_theta(a)] is the
  score-function term that pathwise differentiation of k1 misses. Never use k1 as a loss
  (LossConfig refuses it); it is fine as a metric or as a reward penalty.
* k2: grad = (log pi_theta(a) - log pi_0(a)) grad log pi_theta(a), whose expectation is
  exactly grad KL(pi_theta || pi_0) (on-policy).
* k3: grad = (1 - pi_0(a)/pi_theta(a)) grad log pi_theta(a), whose expectation is
  -sum_a pi_0(a) grad log pi_theta(a) = grad KL(pi_0 || pi_theta): the forward
  (mass-covering) KL. It does pull towards pi_0, and it is the usual default.
* k3+: the gradient of k2 with the value of k3 (verl's "k3+").
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp

from pivotrl_jax.registry import Registry
from pivotrl_jax.train.aggregation import as_float

Array = jax.Array

# verl's bounds for "low_var_kl": the log-ratio before exp, then the estimate itself.
LOG_RATIO_BOUND = 20.0
K3_BOUND = 10.0
# Estimators whose gradient as a loss has zero expectation (see above): metrics only.
KL_REFUSED_AS_LOSS = frozenset({"k1"})


class KLEstimator(Protocol):
    def __call__(self, logprobs: Array, ref_logprobs: Array) -> Array: ...


KL_ESTIMATORS: Registry[KLEstimator] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(
    logprobs: Array,  # [B, T] log pi_theta(a_t)
    ref_logprobs: Array,  # [B, T] log pi_0(a_t)
) -> Array:  # [B, T]
    """k1 = log pi_theta - log pi_0. A metric, not a loss (see the module docstring)."""
    return as_float(logprobs) - as_float(ref_logprobs)  # float32 (or wider)


@KL_ESTIMATORS.register("k2")
def k2(
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
) -> Array:  # [B, T]
    """k2 = (log pi_theta - log pi_0)^2 / 2."""
    d = as_float(logprobs) - as_float(ref_logprobs)  # float32 (or wider)
    return 0.5 * d * d


@KL_ESTIMATORS.register("k3")
def k3(
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
) -> Array:  # [B, T]
    """k3 = exp(log r) - log r - 1, log r = clip(log pi_0 - log pi_theta, ±20); then clip ±10."""
    log_r = as_float(ref_logprobs) - as_float(logprobs)  # float32 (or wider)
    log_r = jnp.clip(log_r, -LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    return jnp.clip(jnp.exp(log_r) - log_r - 1.0, -K3_BOUND, K3_BOUND)


@KL_ESTIMATORS.register("k3+")
def k3_straight_through(
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
) -> Array:  # [B, T]
    """Value of k3, gradient of k2: k2 - sg(k2) + sg(k3)."""
    grad_part = k2(logprobs, ref_logprobs)
    value = k3(logprobs, ref_logprobs)
    return grad_part - jax.lax.stop_gradient(grad_part) + jax.lax.stop_gradient(value)


def kl_estimate(
    name: str,
    logprobs: Array,  # [B, T]
    ref_logprobs: Array,  # [B, T]
) -> Array:  # [B, T]
    """Look up `name` in KL_ESTIMATORS and apply it."""
    return KL_ESTIMATORS.get(name)(logprobs, ref_logprobs)
