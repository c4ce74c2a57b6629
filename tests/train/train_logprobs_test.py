"""token_logprobs against a hand-worked case and a NumPy log-softmax; next-token alignment."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pivotrl_jax.train.logprobs import next_token_targets, sequence_logprobs, token_logprobs


def test_hand_worked_case():
    # logits [0, ln 3] -> probabilities [1/4, 3/4]
    logits = jnp.asarray([[[0.0, np.log(3.0)], [0.0, np.log(3.0)]]])
    got = token_logprobs(logits, jnp.asarray([[0, 1]]))
    np.testing.assert_allclose(got, [[np.log(0.25), np.log(0.75)]], rtol=1e-6)


def test_matches_numpy_log_softmax_in_float32_from_bfloat16():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=5.0, size=(3, 4, 11)).astype(np.float32)
    targets = rng.integers(0, 11, size=(3, 4))
    bf16 = jnp.asarray(logits, jnp.bfloat16)
    got = token_logprobs(bf16, jnp.asarray(targets))
    assert got.dtype == jnp.float32
    x = np.asarray(bf16, np.float64)
    logp = x - x.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    want = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_next_token_targets_stop_at_segment_ends():
    ids = jnp.asarray([[5, 6, 7, 8, 9, 0]])
    seg = jnp.asarray([[1, 1, 2, 2, 2, 0]])
    targets, valid = next_token_targets(ids, seg)
    np.testing.assert_array_equal(valid, [[True, False, True, True, False, False]])
    np.testing.assert_array_equal(targets, [[6, 0, 8, 9, 0, 0]])


def test_sequence_logprobs_gathers_the_next_token():
    V = 10
    ids = jnp.asarray([[1, 2, 3, 0]])
    seg = jnp.asarray([[1, 1, 1, 0]])
    pos = jnp.asarray([[0, 1, 2, 0]])
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, V)), jnp.float32)
    lp, valid = sequence_logprobs(lambda i, p, s: logits, ids, pos, seg)
    want = token_logprobs(logits, jnp.asarray([[2, 3, 0, 0]]))
    np.testing.assert_allclose(lp[0, :2], want[0, :2])
    np.testing.assert_array_equal(lp[0, 2:], [0.0, 0.0])
    np.testing.assert_array_equal(valid, [[True, True, False, False]])
