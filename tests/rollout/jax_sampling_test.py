"""The sampling math against hand-worked cases and the softmax it is meant to draw from."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.rollout.sampling import filter_mask, sample, step_keys, tempered_log_probs

# A hand-worked 4-token distribution, stored out of rank order to exercise the unsort.
PROBS = np.array([0.15, 0.5, 0.05, 0.3])  # ranks: token 1, 3, 0, 2


def _log(p):
    return jnp.asarray(np.log(p), jnp.float32)[None, :]


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


def test_tempered_log_probs_is_log_softmax_of_scaled_logits():
    z = jnp.array([[1.0, -2.0, 0.5, 3.0]])
    np.testing.assert_allclose(tempered_log_probs(z, 1.0), jax.nn.log_softmax(z), atol=1e-7)
    np.testing.assert_allclose(tempered_log_probs(z, 0.5), jax.nn.log_softmax(2 * z), atol=1e-6)
    # Greedy (T = 0) reports the temperature-1 distribution.
    np.testing.assert_allclose(tempered_log_probs(z, 0.0), jax.nn.log_softmax(z), atol=1e-7)


@pytest.mark.parametrize(
    "top_k, top_p, kept",
    [
        (-1, 1.0, {0, 1, 2, 3}),
        (1, 1.0, {1}),
        (3, 1.0, {0, 1, 3}),
        (-1, 0.7, {1, 3}),  # mass before ranks: 0, .5, .8, .95
        (-1, 0.81, {0, 1, 3}),
        (-1, 1e-6, {1}),  # the top token always survives
        (2, 0.99, {1, 3}),  # both limits
    ],
)
def test_filter_mask_hand_worked(top_k, top_p, kept):
    mask = np.asarray(filter_mask(_log(PROBS), top_k, top_p))[0]
    assert set(np.flatnonzero(mask)) == kept


def test_greedy_is_argmax_and_reports_temperature_one_logprob():
    z = jnp.array([[0.1, 2.0, -1.0], [3.0, 3.0, 0.0]])
    tokens, lp = sample(z, _keys(2), 0.0, -1, 1.0, greedy=True, filtered=False)
    np.testing.assert_array_equal(tokens, [1, 0])  # ties go to the lowest index
    np.testing.assert_allclose(lp, jax.nn.log_softmax(z)[jnp.arange(2), tokens], atol=1e-7)


def _chi_square(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


# 99.9% quantiles of chi-square with 3 and 1 degrees of freedom.
CHI2_999 = {3: 16.27, 1: 10.83}


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_frequencies_match_tempered_softmax(temperature):
    n = 6000
    logits = jnp.broadcast_to(_log(PROBS), (n, 4))
    tokens, lp = sample(logits, _keys(n), temperature, -1, 1.0, greedy=False, filtered=False)
    target = PROBS ** (1 / temperature) / np.sum(PROBS ** (1 / temperature))
    counts = np.bincount(np.asarray(tokens), minlength=4)
    assert _chi_square(counts, target) < CHI2_999[3], counts
    np.testing.assert_allclose(lp, np.log(target)[np.asarray(tokens)], atol=1e-6)


def test_filtered_frequencies_are_renormalised_but_logprobs_are_not():
    n = 6000
    logits = jnp.broadcast_to(_log(PROBS), (n, 4))
    tokens, lp = sample(logits, _keys(n, seed=1), 1.0, 2, 1.0, greedy=False, filtered=True)
    tokens = np.asarray(tokens)
    assert set(np.unique(tokens)) <= {1, 3}
    counts = np.array([np.sum(tokens == 1), np.sum(tokens == 3)])
    assert _chi_square(counts, np.array([0.5, 0.3]) / 0.8) < CHI2_999[1], counts
    # The logprob is of the untruncated distribution.
    np.testing.assert_allclose(lp, np.log(PROBS)[tokens], atol=1e-6)


def test_row_keys_make_draws_independent_of_the_batch():
    logits = jax.random.normal(jax.random.key(3), (6, 50))
    keys = step_keys(_keys(6, seed=7), 4)
    full, _ = sample(logits, keys, 1.0, -1, 1.0, greedy=False, filtered=False)
    part, _ = sample(logits[2:4], keys[2:4], 1.0, -1, 1.0, greedy=False, filtered=False)
    np.testing.assert_array_equal(full[2:4], part)
    other = step_keys(_keys(6, seed=7), 5)
    later, _ = sample(logits, other, 1.0, -1, 1.0, greedy=False, filtered=False)
    assert not np.array_equal(full, later)  # a new step draws anew (6 rows of 50 tokens)
