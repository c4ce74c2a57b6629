"""token_logprobs against a hand-worked case and a NumPy log-softmax; next-token alignment;
chunked log-probs against the full logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.train.logprobs import (
    chunked_logprobs,
    next_token_targets,
    sequence_logprobs,
    token_logprobs,
)
from pivotrl_jax.train.losses import token_entropy


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


@pytest.mark.parametrize("chunk", [8, 24, 1000])
def test_chunked_logprobs_equal_the_full_logits(chunk):
    """Values, entropy and gradients (hidden states and head) of the chunked computation
    against token_logprobs / token_entropy on the full [B, T, V] logits."""
    rng = np.random.default_rng(2)
    B, T, D, V = 3, 7, 5, 11
    hidden = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(D, V)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, V, size=(B, T)))
    weights = jnp.asarray(rng.normal(size=(2, B, T)), jnp.float32)

    def full(h, w):
        logits = jnp.einsum("BTD,DV->BTV", h, w)
        return token_logprobs(logits, targets), token_entropy(logits)

    def chunked(h, w):
        return chunked_logprobs(h, w, targets, chunk=chunk, with_entropy=True, entropy_grad=True)

    for f in (full, chunked):
        lp, ent = f(hidden, head)
        assert lp.shape == ent.shape == (B, T)
    (lp_a, ent_a), (lp_b, ent_b) = full(hidden, head), chunked(hidden, head)
    np.testing.assert_allclose(lp_b, lp_a, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ent_b, ent_a, atol=1e-5, rtol=0)

    def objective(f):
        def loss(h, w):
            lp, ent = f(h, w)
            return jnp.sum(weights[0] * lp) + jnp.sum(weights[1] * ent)

        return jax.grad(loss, argnums=(0, 1))

    for a, b in zip(objective(full)(hidden, head), jax.jit(objective(chunked))(hidden, head)):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    # Without entropy_grad the entropy carries no gradient.
    g = jax.grad(
        lambda h: jnp.sum(chunked_logprobs(h, head, targets, chunk=chunk, with_entropy=True)[1])
    )(hidden)
    np.testing.assert_array_equal(g, 0.0)
