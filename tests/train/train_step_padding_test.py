"""Padding and packing never change a row's logprobs, loss or gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.models.sharding import single_device_mesh
from pivotrl_jax.models.transformer import forward
from pivotrl_jax.train import state as st
from pivotrl_jax.train.batching import (
    Sequence,
    bucket_length,
    bucket_rows,
    make_batch,
    make_batch_and_layout,
    response_values,
)
from pivotrl_jax.train.losses import LossConfig
from pivotrl_jax.train.step import (
    StepConfig,
    accumulate_gradients,
    grpo_loss,
    make_logprobs_fn,
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


def sequences(n: int, seed: int) -> list[Sequence]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lp, lr = int(rng.integers(2, 10)), int(rng.integers(1, 7))
        out.append(
            Sequence(
                tuple(int(x) for x in rng.integers(1, 64, lp)),
                tuple(int(x) for x in rng.integers(1, 64, lr)),
                tuple([-1.0] * lr),
                float(rng.normal()),
            )
        )
    return out


def unpadded_reference(graphdef, params, s: Sequence) -> np.ndarray:
    """The response logprobs from a [1, n] forward with no padding at all, via numpy."""
    tokens = np.asarray(s.prompt_ids + s.response_ids, np.int32)[None]
    n = tokens.shape[1]
    logits = forward(graphdef, params, tokens, np.arange(n)[None], np.ones_like(tokens))
    logits = np.asarray(logits[0], np.float64)
    logp = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    lp = len(s.prompt_ids)
    return np.asarray([logp[j - 1, tokens[0, j]] for j in range(lp, n)])


def test_bucket_helpers():
    assert bucket_length(17, (16, 32, 64)) == 32
    assert bucket_rows(5, 4, 64) == 8 and bucket_rows(9, 4, 64) == 16
    assert bucket_rows(40, 8, 48) == 48  # capped at max rows
    batch = make_batch(sequences(3, 0), length_buckets=(32,))
    s = sequences(3, 0)[0]
    lp, n = len(s.prompt_ids), len(s.prompt_ids) + len(s.response_ids)
    assert batch.loss_mask[0].sum() == len(s.response_ids)
    assert batch.loss_mask[0, lp - 1] == 1 and batch.loss_mask[0, lp - 2] == 0
    assert batch.targets[0, lp - 1] == s.response_ids[0] and batch.segment_ids[0, n] == 0


def test_padding_and_packing_never_change_a_rows_logprobs():
    policy = st.make_policy(CFG, single_device_mesh())
    params = st.init_params(policy, 0, jnp.float32)
    seqs = sequences(6, 1)
    fn = make_logprobs_fn(policy)
    expect = [unpadded_reference(policy.graphdef, params, s) for s in seqs]
    layouts = {
        "T16": dict(length_buckets=(16,)),
        "T48_8rows": dict(length_buckets=(48,), row_multiple=8),
        "packed_T32": dict(length_buckets=(32,), pack=True),
    }
    got = {}
    for name, kw in layouts.items():
        batch, layout = make_batch_and_layout(seqs, **kw)
        if name == "packed_T32":
            assert batch.input_ids.shape[0] < len(seqs)  # really packed
        out = np.asarray(fn(params, place_batch(batch, policy)))
        got[name] = response_values(out, seqs, layout)
        for e, g in zip(expect, got[name]):
            np.testing.assert_allclose(g, e, atol=2e-5, rtol=0, err_msg=name)
    # Garbage token ids in the padding give bitwise the same logprobs as zero padding.
    batch = make_batch(seqs, length_buckets=(48,), row_multiple=8)
    noise = np.random.default_rng(2).integers(1, 64, batch.input_ids.shape).astype(np.int32)
    garbage = batch.replace(input_ids=np.where(batch.segment_ids == 0, noise, batch.input_ids))
    a = np.asarray(fn(params, place_batch(batch, policy)))
    b = np.asarray(fn(params, place_batch(garbage, policy)))
    np.testing.assert_array_equal(a * batch.loss_mask, b * batch.loss_mask)


def test_padding_does_not_change_loss_or_gradient():
    policy = st.make_policy(CFG, single_device_mesh())
    params = st.init_params(policy, 0, jnp.float32)
    seqs = sequences(4, 3)
    loss = LossConfig()
    outs = []
    for kw in (
        dict(length_buckets=(16,)),
        dict(length_buckets=(40,), row_multiple=8),
        dict(length_buckets=(32,), pack=True),
    ):
        batch = place_batch(make_batch(seqs, **kw), policy)
        outs.append(
            jax.jit(lambda p, b: accumulate_gradients(policy, grpo_loss(loss), StepConfig(), p, b))(
                params, batch
            )
        )
    for grads, parts, _ in outs[1:]:
        np.testing.assert_allclose(float(parts.count), float(outs[0][1].count))
        np.testing.assert_allclose(float(parts.sum), float(outs[0][1].sum), rtol=1e-5)
        for a, b in zip(jax.tree.leaves(outs[0][0]), jax.tree.leaves(grads)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, rtol=1e-4)


def test_row_buckets_bound_the_shapes():
    """However many rows the kept groups need, the batch has one of a few row counts: the
    multiple x {1, 2, 3, 4, 6, 8, ...} up to the cap (2 per octave), or x 2^k (1 per octave)."""
    for per_octave, want in ((1, {4, 8, 16, 32, 64, 100}), (2, {4, 8, 12, 16, 24, 32, 48, 64, 96})):
        got = {bucket_rows(n, 4, 100, per_octave) for n in range(1, 101)}
        assert got <= want | {100}, (per_octave, sorted(got))
        assert all(bucket_rows(n, 4, 100, per_octave) >= n for n in range(1, 101))
    assert bucket_rows(9, 4, 100, 2) == 12 and bucket_rows(13, 4, 100, 2) == 16
    # make_batch with prefix-shared groups (one per row at T=32): 1..8 groups, 3 row counts.
    rows = set()
    for n in range(1, 9):
        batch, layout = make_batch_and_layout(
            groups(n, 4, seed=n), length_buckets=(32,), row_multiple=2, max_rows=16,
            share_prefix=True, pack=True, pad_rows=True, rows_per_octave=2,
        )  # fmt: skip
        assert layout.rows == n and batch.input_ids.shape[0] >= n
        assert not batch.segment_ids[layout.rows :].any()  # filler rows are all padding
        rows.add(batch.input_ids.shape[0])
    assert rows == {2, 4, 6, 8}


def groups(n: int, size: int, seed: int) -> list[Sequence]:
    """n GRPO groups of `size` samples sharing a prompt, each group 19..29 tokens long once its
    prompt is shared (so two never fit one row of 32)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt = tuple(int(x) for x in rng.integers(1, 64, int(rng.integers(8, 11))))
        for _ in range(size):
            lr = int(rng.integers(2, 5))
            response = tuple(int(x) for x in rng.integers(1, 64, lr))
            out.append(Sequence(prompt, response, tuple([-1.0] * lr), float(rng.normal())))
    return out


@pytest.mark.slow
def test_filler_rows_change_neither_loss_nor_gradient():
    """5 prefix-shared groups in 5 rows, one micro-batch, against the same rows plus 3 filler rows
    (the row bucket of 8) in 2 strided micro-batches."""
    policy = st.make_policy(CFG, single_device_mesh())
    params = st.init_params(policy, 0, jnp.float32)
    seqs = groups(5, 4, seed=7)
    layout = dict(length_buckets=(32,), share_prefix=True, pack=True)
    cases = {
        "5 rows": (dict(row_multiple=1), 1),
        "8 rows, M=2": (dict(row_multiple=2, max_rows=20, pad_rows=True), 2),
    }
    outs = {}
    for name, (rows, m) in cases.items():
        batch = make_batch(seqs, **layout, **rows)
        assert batch.input_ids.shape[0] == int(name.split()[0])
        step = StepConfig(micro_batches=m)
        fn = jax.jit(
            lambda p, b, s=step: accumulate_gradients(policy, grpo_loss(LossConfig()), s, p, b)
        )
        outs[name] = fn(params, place_batch(batch, policy))
    grads0, parts0, _ = outs["5 rows"]
    assert float(parts0.count) > 0
    for name in ("8 rows, M=2",):
        grads, parts, _ = outs[name]
        assert float(parts.count) == float(parts0.count), name
        np.testing.assert_allclose(float(parts.sum), float(parts0.sum), rtol=1e-6, err_msg=name)
        for a, b in zip(jax.tree.leaves(grads0), jax.tree.leaves(grads), strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-7, rtol=1e-5)
