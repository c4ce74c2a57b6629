"""Policy losses, aggregation and the combined objective: hand cases and micro-batch exactness."""

import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.train import aggregation as agg
from pivotrl_jax.train import losses

# ---------------------------------------------------------------------------------------
# Aggregation by hand.
#   values [[1, 2, 3], [4, 9, 9]], mask [[1, 1, 1], [1, 0, 0]]  (9 = padding garbage)
#   token-mean:               (1 + 2 + 3 + 4) / 4 tokens      = 2.5
#   seq-mean-token-mean:      ((1 + 2 + 3)/3 + 4/1) / 2 rows  = 3.0
#   seq-mean-token-sum-norm:  (6 + 4) / (2 rows · H=4)        = 1.25
# A mean over the padded width would give (6 + 4)/6 = 1.667 for token-mean; letting the
# padding through would give 38/4 = 9.5.
# ---------------------------------------------------------------------------------------
VALUES = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
MASK = jnp.asarray([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    "mode,want_sum,want_count",
    [
        ("token-mean", 10.0, 4.0),
        ("seq-mean-token-mean", 6.0, 2.0),
        ("seq-mean-token-sum-norm", 10.0, 8.0),
    ],
)
def test_aggregation_by_hand(mode, want_sum, want_count):
    parts = agg.aggregate(mode, VALUES, MASK, horizon=4)
    np.testing.assert_allclose([parts.sum, parts.count], [want_sum, want_count], rtol=1e-6)


def test_empty_rows_count_for_nothing():
    # A third, fully masked row changes neither seq-mean value.
    values = jnp.concatenate([VALUES, jnp.full((1, 3), 7.0)])
    mask = jnp.concatenate([MASK, jnp.zeros((1, 3), MASK.dtype)])
    for mode, want in [("seq-mean-token-mean", 3.0), ("seq-mean-token-sum-norm", 1.25)]:
        np.testing.assert_allclose(
            agg.loss_value(agg.aggregate(mode, values, mask, horizon=4)), want
        )
    assert float(agg.loss_value(agg.aggregate("token-mean", values, 0 * mask))) == 0.0


def test_dr_grpo_needs_a_horizon():
    with pytest.raises(ValueError, match="horizon"):
        agg.aggregate("seq-mean-token-sum-norm", VALUES, MASK)
    with pytest.raises(ValueError, match="horizon"):
        losses.LossConfig(aggregation="seq-mean-token-sum-norm")


# ---------------------------------------------------------------------------------------
# PPO by hand: one row, four tokens, clip_low 0.2, clip_high 0.28, dual clip c = 3.
#   t0: A=+1, r=1.1  inside [0.8, 1.28]        -> l = -1.1    d l/d logp = -A·r = -1.1
#   t1: A=+1, r=1.5  above 1.28: clipped high   -> l = -1.28   gradient 0
#   t2: A=-1, r=0.5  below 0.8: clipped low     -> l = +0.8    gradient 0
#   t3: A=-1, r=4.0  max(4, 1.28) = 4 > c = 3   -> l = +3      gradient 0 (dual clip)
# token-mean: (-1.1 - 1.28 + 0.8 + 3) / 4 = 0.355; gradient of the mean: (-0.275, 0, 0, 0).
# Without the dual clip t3 would give 4 and the mean 0.605.
# ---------------------------------------------------------------------------------------
PPO_RATIOS = np.array([[1.1, 1.5, 0.5, 4.0]])
PPO_ADV = jnp.asarray([[1.0, 1.0, -1.0, -1.0]])


def _ppo_case(cfg):
    old = jnp.zeros((1, 4))
    mask = jnp.ones((1, 4))

    def loss(lp):
        parts, metrics = losses.grpo_objective(cfg, lp, old, PPO_ADV, mask)
        return agg.loss_value(parts), metrics

    lp = jnp.log(jnp.asarray(PPO_RATIOS))
    (value, metrics), grad = jax.value_and_grad(loss, has_aux=True)(lp)
    return value, grad, metrics


def test_ppo_dual_clip_by_hand():
    cfg = losses.LossConfig(clip_low=0.2, clip_high=0.28, clip_c=3.0)
    value, grad, metrics = _ppo_case(cfg)
    np.testing.assert_allclose(value, 0.355, rtol=1e-6)
    np.testing.assert_allclose(grad, [[-0.275, 0.0, 0.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(
        [metrics[k] for k in ("clip/low_fraction", "clip/high_fraction", "clip/dual_fraction")],
        [0.25, 0.25, 0.25],
    )
    np.testing.assert_allclose(
        [metrics["ratio/min"], metrics["ratio/max"], metrics["ratio/mean"]],
        [0.5, 4.0, (1.1 + 1.5 + 0.5 + 4.0) / 4],
        rtol=1e-6,
    )


def test_ppo_without_dual_clip_by_hand():
    # t3 now costs -A·r = 4 and keeps its gradient -A·r/4 = +1.
    value, grad, metrics = _ppo_case(losses.LossConfig(clip_low=0.2, clip_high=0.28))
    np.testing.assert_allclose(value, 0.605, rtol=1e-6)
    np.testing.assert_allclose(grad, [[-0.275, 0.0, 0.0, 1.0]], atol=1e-6)
    assert float(metrics["clip/dual_fraction"]) == 0.0


# ---------------------------------------------------------------------------------------
# GSPO by hand: one row, two tokens, log-ratios (ln 2, 0), A = +1, clip 0.2/0.5.
#   s = exp((ln 2 + 0)/2) = sqrt(2) = 1.41421 < 1.5: unclipped, both tokens' loss -sqrt(2).
#   token-mean value -sqrt(2); each token's gradient -A·s/2 = -0.70711 (the same for both),
#   where token-level PPO would give -2/2 = -1 and -1/2 = -0.5.
# With clip_high 0.2, s > 1.2 is clipped: value -1.2, gradient 0.
# ---------------------------------------------------------------------------------------
def test_gspo_by_hand():
    old = jnp.zeros((1, 2))
    lp = jnp.asarray([[math.log(2.0), 0.0]])
    mask = jnp.ones((1, 2))
    adv = jnp.asarray([1.0])  # [B]: one advantage per sequence

    def loss(lp, clip_high):
        cfg = losses.LossConfig(policy_loss="gspo", clip_low=0.2, clip_high=clip_high)
        return agg.loss_value(losses.grpo_objective(cfg, lp, old, adv, mask)[0])

    value, grad = jax.value_and_grad(loss)(lp, 0.5)
    np.testing.assert_allclose(value, -math.sqrt(2.0), rtol=1e-6)
    np.testing.assert_allclose(grad, [[-math.sqrt(2.0) / 2] * 2], rtol=1e-6)
    value, grad = jax.value_and_grad(loss)(lp, 0.2)
    np.testing.assert_allclose(value, -1.2, rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="dual clip"):
        losses.gspo(lp, old, adv, mask, clip_low=0.2, clip_high=0.2, clip_c=3.0)


# ---------------------------------------------------------------------------------------
# Truncated IS by hand: old - behaviour = (ln 2, ln 8, 0); cap 5 -> w = (2, 5, 1), the
# middle token truncated. With A = +1 and ratio 1 (on-policy) the token losses are -w, the
# token-mean -(2 + 5 + 1)/3 = -8/3 and the gradient -w/3; no gradient flows into w.
# ---------------------------------------------------------------------------------------
def test_truncated_is_by_hand():
    old = jnp.zeros((1, 3))
    behaviour = -jnp.log(jnp.asarray([[2.0, 8.0, 1.0]]))
    mask = jnp.ones((1, 3))
    cfg = losses.LossConfig(tis_cap=5.0)

    def loss(lp, old, behaviour):
        parts, metrics = losses.grpo_objective(
            cfg, lp, old, jnp.ones(1), mask, behaviour_logprobs=behaviour
        )
        return agg.loss_value(parts), metrics

    (value, metrics), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        old, old, behaviour
    )
    np.testing.assert_allclose(value, -8 / 3, rtol=1e-6)
    np.testing.assert_allclose(grads[0], [[-2 / 3, -5 / 3, -1 / 3]], rtol=1e-6)
    np.testing.assert_allclose(grads[2], np.zeros((1, 3)))  # stop-gradient on w
    np.testing.assert_allclose(metrics["tis/truncated_fraction"], 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["tis/weight_mean"], 8 / 3, rtol=1e-6)
    np.testing.assert_allclose(metrics["mismatch/max_abs"], math.log(8.0), rtol=1e-6)
    np.testing.assert_allclose(metrics["mismatch/mean_abs"], math.log(16.0) / 3, rtol=1e-6)


def test_token_entropy_by_hand():
    # Uniform over 4: ln 4. One-hot-ish logits (0, -inf-like): entropy ~0.
    # Two-way (ln 3, 0) -> p = (3/4, 1/4): H = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.562335.
    logits = jnp.asarray(
        [[[0.0, 0.0, 0.0, 0.0], [0.0, -1e4, -1e4, -1e4], [math.log(3), 0, -1e4, -1e4]]]
    )
    want = [[math.log(4.0), 0.0, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]]
    np.testing.assert_allclose(losses.token_entropy(logits), want, atol=1e-6)


def test_entropy_bonus_and_kl_terms_share_the_count():
    # total = agg(policy) + beta·agg(kl) - c·agg(entropy), all over the same tokens.
    rng = np.random.default_rng(3)
    b, t = 3, 5
    lp, old, ref, ent = (jnp.asarray(rng.normal(size=(b, t)) - 2) for _ in range(4))
    adv = jnp.asarray(rng.normal(size=b))
    mask = jnp.asarray(rng.integers(0, 2, size=(b, t)))
    cfg = losses.LossConfig(beta=0.3, entropy_coef=0.01, clip_high=0.28)
    parts, m = losses.grpo_objective(cfg, lp, old, adv, mask, ref_logprobs=ref, entropy=ent)
    n = float(jnp.sum(mask))
    np.testing.assert_allclose(parts.count, n)
    want = m["loss/policy_sum"] + 0.3 * m["loss/kl_sum"] - 0.01 * m["loss/entropy_sum"]
    np.testing.assert_allclose(parts.sum, want, rtol=1e-6)
    kl_by_hand = np.sum((np.exp(ref - lp) - (ref - lp) - 1) * mask)  # k3, no clamp active
    np.testing.assert_allclose(m["loss/kl_sum"], kl_by_hand, rtol=1e-5)


def test_beta_needs_a_reference():
    cfg = losses.LossConfig(beta=0.1)
    z = jnp.zeros((1, 2))
    with pytest.raises(ValueError, match="ref_logprobs"):
        losses.grpo_objective(cfg, z, z, jnp.zeros(1), jnp.ones((1, 2)))


# ---------------------------------------------------------------------------------------
# Micro-batch exactness. A tiny policy: logits = x @ W, W [D, V]. A batch of B = 8 rows with
# ragged masks is split into 4 micro-batches of 2. The full batch's loss and gradient must
# equal sum_k sum_k / sum_k count_k and (sum_k grad sum_k) / (sum_k count_k).
# ---------------------------------------------------------------------------------------
B, T, D, V = 8, 6, 3, 5


def _batch(seed):
    rng = np.random.default_rng(seed)
    lengths = np.array([6, 0, 3, 6, 2, 5, 4, 6])  # row 1 empty (a dropped group, say)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float64)
    mask[5, 0] = 0.0  # a hole inside a row (an unmasked tool-result token, say)
    return dict(
        x=rng.normal(size=(B, T, D)),
        tokens=rng.integers(0, V, size=(B, T)),
        old=np.log(rng.dirichlet(np.ones(V), size=(B, T))),
        ref=np.log(rng.dirichlet(np.ones(V), size=(B, T))),
        behaviour_shift=rng.normal(scale=0.8, size=(B, T)),
        adv=rng.normal(size=B),
        mask=mask,
        w=rng.normal(size=(D, V)),
    )


def _objective_parts(cfg, w, data, rows):
    logits = jnp.einsum("btd,dv->btv", data["x"][rows], w)
    logp_all = jax.nn.log_softmax(logits)
    tok = data["tokens"][rows][..., None]
    lp = jnp.take_along_axis(logp_all, tok, axis=-1)[..., 0]
    old = jnp.take_along_axis(data["old"][rows], tok, axis=-1)[..., 0]
    ref = jnp.take_along_axis(data["ref"][rows], tok, axis=-1)[..., 0]
    return losses.grpo_objective(
        cfg,
        lp,
        old,
        data["adv"][rows],
        data["mask"][rows],
        ref_logprobs=ref,
        behaviour_logprobs=old + data["behaviour_shift"][rows],
        entropy=losses.token_entropy(logits),
    )


CONFIGS = {
    "ppo-token-mean": losses.LossConfig(clip_high=0.28, clip_c=3.0, beta=0.1, entropy_coef=0.01),
    "ppo-seq-mean-token-mean": losses.LossConfig(aggregation="seq-mean-token-mean", beta=0.1),
    "ppo-dr-grpo": losses.LossConfig(aggregation="seq-mean-token-sum-norm", horizon=T, beta=0.1),
    "gspo-seq-mean-token-mean": losses.LossConfig(
        policy_loss="gspo", aggregation="seq-mean-token-mean", beta=0.1, kl_estimator="k3+"
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_micro_batches_equal_the_full_batch(name):
    cfg = CONFIGS[name]
    with jax.enable_x64(True):
        data = {k: jnp.asarray(v) for k, v in _batch(4).items()}
        w = data["w"]
        splits = [jnp.arange(2 * k, 2 * k + 2) for k in range(4)]
        full_rows = jnp.arange(B)
        objective = jax.jit(lambda w, rows: _objective_parts(cfg, w, data, rows))

        def full_loss(w):
            return agg.loss_value(objective(w, full_rows)[0])

        value, grad = jax.value_and_grad(full_loss)(w)

        # The count needs only the masks: compute it first, then accumulate sums.
        parts = [objective(w, rows)[0] for rows in splits]
        total = agg.combine(parts)
        grads = [jax.grad(lambda w, r=rows: objective(w, r)[0].sum)(w) for rows in splits]
        np.testing.assert_allclose(agg.loss_value(total), value, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(sum(grads) / total.count, grad, rtol=1e-12, atol=1e-14)

        # The test can fail: averaging the micro-batch losses is not the full-batch loss.
        naive = np.mean([agg.loss_value(p) for p in parts])
        assert abs(naive - value) > 1e-3

        merged = losses.merge_metrics([objective(w, rows)[1] for rows in splits])
        want = objective(w, full_rows)[1]
        assert set(merged) == set(want)
        for key in want:
            np.testing.assert_allclose(merged[key], want[key], rtol=1e-12, err_msg=key)


def test_objective_jits_and_keeps_float32_for_bf16_inputs():
    rng = np.random.default_rng(5)
    lp = jnp.asarray(rng.normal(size=(2, 4)) - 1, jnp.bfloat16)
    cfg = losses.LossConfig(beta=0.1)
    parts, metrics = jax.jit(losses.grpo_objective, static_argnums=0)(
        cfg, lp, lp, jnp.ones(2), jnp.ones((2, 4)), ref_logprobs=lp, behaviour_logprobs=lp
    )
    assert parts.sum.dtype == jnp.float32 and metrics["kl/mean"].dtype == jnp.float32
    np.testing.assert_allclose(parts.sum, -8.0)  # ratio 1, w 1, KL 0: -A per token
    np.testing.assert_allclose(metrics["kl/mean"], 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(clip_low=1.0),
        dict(clip_high=0.0),
        dict(clip_c=1.0),
        dict(tis_cap=0.0),
        dict(beta=-1.0),
        dict(policy_loss="nope"),
        dict(aggregation="nope"),
    ],
)
def test_loss_config_rejects_bad_values(kwargs):
    with pytest.raises((ValueError, KeyError)):
        losses.LossConfig(**kwargs)


def test_defaults_are_the_pivotrl_recipe():
    cfg = losses.LossConfig()
    assert (cfg.policy_loss, cfg.clip_low, cfg.clip_high, cfg.clip_c) == ("ppo", 0.2, 0.2, None)
    assert (cfg.aggregation, cfg.tis_cap, cfg.beta, cfg.kl_estimator) == (
        "token-mean",
        5.0,
        0.0,
        "k3",
    )


# ---------------------------------------------------------------------------------------
# Packed equals unpacked. Four sequences with per-token values
#   s1 = [1, 2, 3] (mean 2), s2 = [4] (mean 4), s3 = [5, 7] (mean 6), s4 = [0, 0, 0, 8] (mean 2)
# one per row, or packed two per row behind a masked prompt token each:
#   row 0: p s1 s1 s1 p s2 . .     segment_ids 1 1 1 1 2 2 0 0
#   row 1: p s3 s3 p s4 s4 s4 s4   segment_ids 1 1 1 2 2 2 2 2
#   token-mean               30 / 10 = 3.0 (either way)
#   seq-mean-token-mean      (2 + 4 + 6 + 2) / 4 = 3.5; treating a packed row as one
#                            sequence would give (10/4 + 20/6) / 2 = 2.9167
#   seq-mean-token-sum-norm  30 / (4 · H=8) = 0.9375; per packed row it would be 1.875
# ---------------------------------------------------------------------------------------
SEQS = [[1.0, 2.0, 3.0], [4.0], [5.0, 7.0], [0.0, 0.0, 0.0, 8.0]]
PACKING = [[0, 1], [2, 3]]  # sequences in each packed row


def _unpacked(seqs, width=6):
    values = np.zeros((len(seqs), width))
    mask = np.zeros((len(seqs), width))
    for i, s in enumerate(seqs):
        values[i, : len(s)] = s
        mask[i, : len(s)] = 1.0
    return values, mask


def _packed(seqs, width=8):
    values = np.zeros((len(PACKING), width))
    mask = np.zeros((len(PACKING), width))
    segments = np.zeros((len(PACKING), width), np.int32)
    for row, members in enumerate(PACKING):
        t = 0
        for seg, i in enumerate(members, start=1):
            segments[row, t] = seg  # the masked prompt token
            t += 1
            n = len(seqs[i])
            values[row, t : t + n] = seqs[i]
            mask[row, t : t + n] = 1.0
            segments[row, t : t + n] = seg
            t += n
    return values, mask, segments


@pytest.mark.parametrize(
    "mode,want,broken",
    [
        ("token-mean", 3.0, 3.0),
        ("seq-mean-token-mean", 3.5, (10 / 4 + 20 / 6) / 2),
        ("seq-mean-token-sum-norm", 0.9375, 1.875),
    ],
)
def test_packed_aggregation_by_hand(mode, want, broken):
    values, mask, segments = (jnp.asarray(x) for x in _packed(SEQS))
    got = agg.loss_value(agg.aggregate(mode, values, mask, horizon=8, segment_ids=segments))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    unpacked = agg.loss_value(agg.aggregate(mode, *map(jnp.asarray, _unpacked(SEQS)), horizon=8))
    np.testing.assert_allclose(unpacked, want, rtol=1e-6)
    no_segments = agg.loss_value(agg.aggregate(mode, values, mask, horizon=8))
    np.testing.assert_allclose(no_segments, broken, rtol=1e-6)


@pytest.mark.parametrize(
    "cfg",
    [
        losses.LossConfig(clip_high=0.28, clip_c=3.0, beta=0.1),
        losses.LossConfig(aggregation="seq-mean-token-mean", beta=0.1),
        losses.LossConfig(aggregation="seq-mean-token-sum-norm", horizon=8, beta=0.1),
        losses.LossConfig(policy_loss="gspo", aggregation="seq-mean-token-mean", clip_high=0.1),
    ],
    ids=["ppo-token-mean", "ppo-seq-mean", "ppo-dr-grpo", "gspo"],
)
def test_packed_objective_equals_unpacked(cfg):
    rng = np.random.default_rng(6)
    lengths = [len(s) for s in SEQS]
    # Random per-token logprobs for the four sequences, and one advantage per sequence.
    tok = {k: [rng.normal(size=n) - 1.0 for n in lengths] for k in ("lp", "old", "ref", "beh")}
    seq_adv = rng.normal(size=len(SEQS))
    adv_tok = [np.full(n, a) for n, a in zip(lengths, seq_adv)]

    def run(layout):
        if layout == "packed":
            arrays = {k: _packed(v)[0] for k, v in tok.items()}
            adv, mask, segments = _packed(adv_tok)
        else:
            arrays = {k: _unpacked(v)[0] for k, v in tok.items()}
            adv, mask = _unpacked(adv_tok)
            segments = None

        def loss(lp):
            parts, metrics = losses.grpo_objective(
                cfg,
                lp,
                jnp.asarray(arrays["old"]),
                jnp.asarray(adv),
                jnp.asarray(mask),
                ref_logprobs=jnp.asarray(arrays["ref"]),
                behaviour_logprobs=jnp.asarray(arrays["beh"]),
                segment_ids=None if segments is None else jnp.asarray(segments),
            )
            return agg.loss_value(parts), metrics

        (value, metrics), grad = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(arrays["lp"]))
        # Gradients back onto the sequences, in order.
        where = np.nonzero(mask)
        return value, np.asarray(grad)[where], metrics

    with jax.enable_x64(True):
        packed, unpacked = run("packed"), run("unpacked")
    np.testing.assert_allclose(packed[0], unpacked[0], rtol=1e-12)
    np.testing.assert_allclose(packed[1], unpacked[1], rtol=1e-12, atol=1e-15)
    assert np.abs(packed[1]).max() > 1e-3  # some gradient flows
    for key in ("clip/low_fraction", "clip/high_fraction", "ratio/mean", "kl/mean"):
        np.testing.assert_allclose(packed[2][key], unpacked[2][key], rtol=1e-12, err_msg=key)


# ---------------------------------------------------------------------------------------
# Property: for random values, masks, packings and row splits, every mode equals a NumPy
# loop over sequences, and the split's combined (sum, count) equals the whole batch's.
# ---------------------------------------------------------------------------------------
def _numpy_aggregate(mode, values, mask, segments, horizon):
    per_seq = []  # (masked token sum, token count) per (row, segment) that has a token
    for b in range(values.shape[0]):
        for seg in np.unique(segments[b]):
            sel = segments[b] == seg
            n = mask[b, sel].sum()
            if n > 0:
                per_seq.append(((values[b, sel] * mask[b, sel]).sum(), n))
    if mode == "token-mean":
        return sum(s for s, _ in per_seq) / max(sum(n for _, n in per_seq), 1)
    if not per_seq:
        return 0.0
    if mode == "seq-mean-token-mean":
        return np.mean([s / n for s, n in per_seq])
    return sum(s for s, _ in per_seq) / (len(per_seq) * horizon)


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), split=st.integers(1, 7))
def test_aggregation_property(seed, split):
    rng = np.random.default_rng(seed)
    b, t = 8, 7
    values = rng.normal(size=(b, t))
    mask = (rng.random((b, t)) < 0.6).astype(np.float64)
    # Segments: cut each row at random points into up to 3 sequences; ids increase along it.
    segments = np.cumsum(rng.random((b, t)) < 0.25, axis=1).clip(max=2).astype(np.int32) + 1
    with jax.enable_x64(True):
        for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
            whole = agg.aggregate(
                mode,
                jnp.asarray(values),
                jnp.asarray(mask),
                horizon=9,
                segment_ids=jnp.asarray(segments),
            )
            want = _numpy_aggregate(mode, values, mask, segments, 9)
            np.testing.assert_allclose(agg.loss_value(whole), want, rtol=1e-12, atol=1e-15)
            halves = [
                agg.aggregate(
                    mode,
                    jnp.asarray(values[r]),
                    jnp.asarray(mask[r]),
                    horizon=9,
                    segment_ids=jnp.asarray(segments[r]),
                )
                for r in (slice(0, split), slice(split, b))
            ]
            np.testing.assert_allclose(agg.combine(halves), whole, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("policy_loss", ["ppo", "gspo"])
def test_padding_garbage_changes_nothing(policy_loss):
    # -inf logprobs (a top-k mismatch) or NaN at padding must not reach the loss or gradient.
    rng = np.random.default_rng(7)
    b, t = 3, 5
    mask = np.ones((b, t))
    mask[0, 3:] = 0.0
    mask[2, :2] = 0.0
    clean = {k: rng.normal(size=(b, t)) - 1.0 for k in ("lp", "old", "ref", "beh", "ent", "adv")}
    dirty = {k: np.where(mask > 0, v, np.nan) for k, v in clean.items()}
    dirty["lp"] = np.where(mask > 0, clean["lp"], -np.inf)
    cfg = losses.LossConfig(policy_loss=policy_loss, beta=0.1, entropy_coef=0.01)

    def run(d):
        def loss(lp):
            parts, _ = losses.grpo_objective(
                cfg,
                lp,
                jnp.asarray(d["old"]),
                jnp.asarray(d["adv"]),
                jnp.asarray(mask),
                ref_logprobs=jnp.asarray(d["ref"]),
                behaviour_logprobs=jnp.asarray(d["beh"]),
                entropy=jnp.asarray(d["ent"]),
            )
            return agg.loss_value(parts)

        return jax.value_and_grad(loss)(jnp.asarray(d["lp"]))

    (v_clean, g_clean), (v_dirty, g_dirty) = run(clean), run(dirty)
    assert np.isfinite(v_dirty) and np.all(np.isfinite(g_dirty))
    np.testing.assert_allclose(v_dirty, v_clean, rtol=1e-6)
    np.testing.assert_allclose(g_dirty, np.where(mask > 0, g_clean, 0.0), rtol=1e-6, atol=1e-8)
