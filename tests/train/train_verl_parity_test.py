"""Parity with verl 0.9.1 (`verl.trainer.ppo.core_algos`) on the same random inputs.

Both sides run in float64 (jax x64, torch float64); values and gradients must agree within
1e-7 (the requirement is 1e-6). Most agree to ~1e-15; seq-mean-token-mean differs by ~1e-9
because verl divides each sequence's sum by (n + 1e-8) where we divide by n.

verl is installed with --no-deps (requirements-nodeps.txt): its metadata pins
transformers < 5.11, which conflicts with our pin, while the modules used here import and
run fine with ours. Their other import-time dependencies are pinned in requirements-extra.txt.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pivotrl_jax.train import advantages as adv
from pivotrl_jax.train import aggregation as agg
from pivotrl_jax.train import kl, losses

core_algos = pytest.importorskip(
    "verl.trainer.ppo.core_algos",
    reason="verl==0.9.1 not installed: pip install --no-deps -r requirements-nodeps.txt",
)
torch = pytest.importorskip("torch")
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights  # noqa: E402
from verl.utils.torch_functional import entropy_from_logits  # noqa: E402
from verl.workers.config import ActorConfig  # noqa: E402

TOL = 1e-7
P, G, T, V = 4, 8, 12, 7
B = P * G
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


def _inputs(seed):
    """Logits, sampled tokens, old/ref/behaviour logprobs, mask, rewards, in float64."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, T, V))
    tokens = rng.integers(0, V, size=(B, T))
    lp = np.take_along_axis(
        logits - np.log(np.exp(logits).sum(-1, keepdims=True)), tokens[..., None], -1
    )[..., 0]
    lengths = rng.integers(1, T + 1, size=B)
    lengths[3] = 0  # one empty response
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
    return dict(
        logits=logits,
        tokens=tokens,
        old=lp + rng.normal(scale=0.8, size=(B, T)),  # ratios across the clip range and past 3
        ref=lp + rng.normal(scale=0.5, size=(B, T)),
        behaviour_shift=rng.normal(scale=1.0, size=(B, T)),  # some TIS weights above 5
        mask=mask,
        rewards=rng.integers(0, 2, size=B).astype(np.float64),
        token_adv=rng.normal(size=(B, T)),
    )


def _actor_config(clip_low, clip_high, clip_c, horizon=None):
    info = {} if horizon is None else {"loss_scale_factor": horizon}
    return ActorConfig(
        strategy="fsdp",
        clip_ratio=clip_low,
        clip_ratio_low=clip_low,
        clip_ratio_high=clip_high,
        clip_ratio_c=clip_c,
        ppo_micro_batch_size_per_gpu=1,
        rollout_n=1,
        global_batch_info=info,
    )


def _t(x, grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def _close(ours, theirs, tol=TOL):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=0, atol=tol)


# -- advantages ---------------------------------------------------------------------------


def _verl_token_rewards(rewards, mask):
    """verl reads outcome rewards as token-level scores summed over the response."""
    scores = np.zeros_like(mask)
    scores[:, -1] = rewards
    return _t(scores), _t(np.ones_like(mask))


@pytest.mark.parametrize("norm", [True, False])
def test_grpo_advantages_match_verl(norm):
    d = _inputs(0)
    index = np.repeat(np.arange(P), G)
    scores, ones = _verl_token_rewards(d["rewards"], d["mask"])
    theirs, _ = core_algos.compute_grpo_outcome_advantage(
        scores, ones, index, epsilon=1e-6, norm_adv_by_std_in_grpo=norm
    )
    with jax.enable_x64(True):
        ours = adv.flat_advantages("grpo" if norm else "dr_grpo", jnp.asarray(d["rewards"]), G)
    _close(ours, theirs[:, 0])
    assert np.abs(np.asarray(ours)).max() > 0.1  # not all groups degenerate


def test_rloo_advantages_match_verl():
    d = _inputs(1)
    index = np.repeat(np.arange(P), G)
    scores, ones = _verl_token_rewards(d["rewards"], d["mask"])
    theirs, _ = core_algos.compute_rloo_outcome_advantage(scores, ones, index, epsilon=1e-6)
    with jax.enable_x64(True):
        ours = adv.flat_advantages("rloo", jnp.asarray(d["rewards"]), G)
    _close(ours, theirs[:, 0])


# -- KL estimators and entropy -----------------------------------------------------------


@pytest.mark.parametrize(
    "ours_name,verl_name", [("k1", "k1"), ("k2", "k2"), ("k3", "low_var_kl"), ("k3+", "k3+")]
)
def test_kl_estimators_match_verl(ours_name, verl_name):
    d = _inputs(2)
    lp = d["old"] * 3  # spread the log-ratios wide enough to hit k3's clamps
    lp_t = _t(lp, grad=True)
    theirs = core_algos.kl_penalty(lp_t, _t(d["ref"]), verl_name)
    theirs.sum().backward()
    with jax.enable_x64(True):

        def f(x):
            return kl.kl_estimate(ours_name, x, jnp.asarray(d["ref"]))

        ours = f(jnp.asarray(lp))
        grad = jax.grad(lambda x: jnp.sum(f(x)))(jnp.asarray(lp))
    _close(ours, theirs)
    _close(grad, lp_t.grad)


def test_entropy_matches_verl():
    d = _inputs(3)
    with jax.enable_x64(True):
        ours = losses.token_entropy(jnp.asarray(d["logits"]))
    _close(ours, entropy_from_logits(_t(d["logits"])))


# -- aggregation ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_aggregation_matches_verl(mode):
    d = _inputs(4)
    horizon = 20  # a constant, not the padded width T
    theirs = core_algos.agg_loss(_t(d["token_adv"]), _t(d["mask"]), mode, loss_scale_factor=horizon)
    with jax.enable_x64(True):
        ours = agg.loss_value(
            agg.aggregate(
                mode, jnp.asarray(d["token_adv"]), jnp.asarray(d["mask"]), horizon=horizon
            )
        )
    _close(ours, theirs)


# -- the whole objective: PPO (clip-higher, dual clip), TIS, k3 KL, entropy -------------------


def _verl_objective(d, mode, cfg, verl_cfg, policy_fn):
    """verl's actor loss: pg (with rollout IS weights) + beta·kl - entropy_coeff·entropy."""
    logits = _t(d["logits"], grad=True)
    logp = torch.log_softmax(logits, dim=-1)
    lp = torch.gather(logp, -1, torch.tensor(d["tokens"])[..., None])[..., 0]
    mask = _t(d["mask"])
    old = _t(d["old"])
    advantages = _t(np.repeat(d["adv"][:, None], T, axis=1)) * mask
    weights, _ = compute_rollout_correction_weights(
        old - (old + _t(d["behaviour_shift"])), mask, "token", cfg.tis_cap
    )
    pg, pg_metrics = policy_fn(
        old, lp, advantages, mask, loss_agg_mode=mode, config=verl_cfg, rollout_is_weights=weights
    )
    horizon = {"loss_scale_factor": cfg.horizon} if cfg.horizon else {}
    kl_loss = core_algos.agg_loss(
        core_algos.kl_penalty(lp, _t(d["ref"]), "low_var_kl"), mask, mode, **horizon
    )
    ent = core_algos.agg_loss(entropy_from_logits(logits), mask, mode, **horizon)
    total = pg + cfg.beta * kl_loss - cfg.entropy_coef * ent
    total.backward()
    return total, logits.grad, pg_metrics


def _our_objective(d, cfg):
    with jax.enable_x64(True):
        tokens = jnp.asarray(d["tokens"])[..., None]
        old = jnp.asarray(d["old"])

        def loss(logits):
            lp = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens, -1)[..., 0]
            parts, metrics = losses.grpo_objective(
                cfg,
                lp,
                old,
                jnp.asarray(d["adv"]),
                jnp.asarray(d["mask"]),
                ref_logprobs=jnp.asarray(d["ref"]),
                behaviour_logprobs=old + jnp.asarray(d["behaviour_shift"]),
                entropy=losses.token_entropy(logits),
            )
            return agg.loss_value(parts), metrics

        (value, metrics), grad = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(d["logits"]))
        return jax.device_get((value, grad, metrics))  # NumPy float64 outside the x64 scope


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clip_c", [3.0, None])
def test_ppo_objective_matches_verl(mode, clip_c):
    d = _inputs(5)
    d["adv"] = np.random.default_rng(6).normal(size=B)
    horizon = T + 3 if mode == "seq-mean-token-sum-norm" else None
    cfg = losses.LossConfig(
        clip_low=0.2,
        clip_high=0.28,
        clip_c=clip_c,
        aggregation=mode,
        horizon=horizon,
        tis_cap=5.0,
        beta=0.05,
        kl_estimator="k3",
        entropy_coef=0.01,
    )
    # verl always applies the dual clip; a bound of 1e9 is never reached.
    verl_cfg = _actor_config(0.2, 0.28, clip_c or 1e9, horizon)
    v_total, v_grad, v_metrics = _verl_objective(
        d, mode, cfg, verl_cfg, core_algos.compute_policy_loss_vanilla
    )
    value, grad, metrics = _our_objective(d, cfg)
    _close(value, v_total)
    _close(grad, v_grad)
    # verl's pg_clipfrac counts both clip sides; pg_clipfrac_lower is the dual clip.
    clip = metrics["clip/low_fraction"] + metrics["clip/high_fraction"]
    np.testing.assert_allclose(clip, v_metrics["actor/pg_clipfrac"], atol=1e-12)
    np.testing.assert_allclose(
        metrics["clip/dual_fraction"], v_metrics["actor/pg_clipfrac_lower"], atol=1e-12
    )
    # The inputs exercise every branch.
    assert min(metrics["clip/low_fraction"], metrics["clip/high_fraction"]) > 0.02
    assert metrics["tis/truncated_fraction"] > 0.01
    assert (metrics["clip/dual_fraction"] > 0) == (clip_c is not None)


def test_gspo_objective_matches_verl():
    d = _inputs(7)
    d["adv"] = np.random.default_rng(8).normal(size=B)
    cfg = losses.LossConfig(
        policy_loss="gspo",
        clip_low=0.05,
        clip_high=0.08,
        aggregation="seq-mean-token-mean",
        beta=0.05,
        entropy_coef=0.01,
    )
    verl_cfg = _actor_config(0.05, 0.08, 3.0)
    v_total, v_grad, v_metrics = _verl_objective(
        d, "seq-mean-token-mean", cfg, verl_cfg, core_algos.compute_policy_loss_gspo
    )
    value, grad, metrics = _our_objective(d, cfg)
    _close(value, v_total)
    _close(grad, v_grad)
    clip = metrics["clip/low_fraction"] + metrics["clip/high_fraction"]
    np.testing.assert_allclose(clip, v_metrics["actor/pg_clipfrac"], atol=1e-12)
    assert 0.05 < clip < 0.95


def test_truncated_is_weights_match_verl():
    d = _inputs(9)
    behaviour = d["old"] + d["behaviour_shift"]
    theirs, _ = compute_rollout_correction_weights(
        _t(d["old"] - behaviour), _t(d["mask"]), "token", 5.0
    )
    with jax.enable_x64(True):
        w, truncated = losses.truncated_is_weights(
            jnp.asarray(d["old"]), jnp.asarray(behaviour), 5.0
        )
    _close(np.asarray(w) * d["mask"], theirs)  # verl zeroes padding, we mask later
    assert 0 < np.asarray(truncated).mean() < 0.5


@pytest.mark.parametrize("mode", MODES)
def test_float32_objective_is_within_1e6_of_verl_float64(mode):
    # The trainer's precision: our float32 objective against verl's float64 one.
    d = _inputs(5)
    d["adv"] = np.random.default_rng(6).normal(size=B)
    horizon = T + 3 if mode == "seq-mean-token-sum-norm" else None
    cfg = losses.LossConfig(
        clip_high=0.28, clip_c=3.0, aggregation=mode, horizon=horizon, beta=0.05, entropy_coef=0.01
    )
    v_total, v_grad, _ = _verl_objective(
        d, mode, cfg, _actor_config(0.2, 0.28, 3.0, horizon), core_algos.compute_policy_loss_vanilla
    )
    f32 = {k: np.asarray(v, np.float32) if v.dtype == np.float64 else v for k, v in d.items()}
    tokens = jnp.asarray(f32["tokens"])[..., None]
    old = jnp.asarray(f32["old"])

    def loss(logits):
        lp = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens, -1)[..., 0]
        parts, _ = losses.grpo_objective(
            cfg,
            lp,
            old,
            jnp.asarray(f32["adv"]),
            jnp.asarray(f32["mask"]),
            ref_logprobs=jnp.asarray(f32["ref"]),
            behaviour_logprobs=old + jnp.asarray(f32["behaviour_shift"]),
            entropy=losses.token_entropy(logits),
        )
        return agg.loss_value(parts)

    value, grad = jax.value_and_grad(loss)(jnp.asarray(f32["logits"]))
    assert value.dtype == jnp.float32
    _close(value, v_total, tol=1e-6)
    _close(grad, v_grad, tol=1e-6)
