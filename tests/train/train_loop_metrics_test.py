"""Rollout metrics, FLOP counts and the metrics writer, against hand-worked numbers."""

from __future__ import annotations

import numpy as np

from pivotrl_jax.models.config import ModelConfig
from pivotrl_jax.train import metrics as m


def test_rollout_metrics_by_hand():
    rewards = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # [P=2, G=4]
    keep = np.array([True, False])
    lengths = np.array([[4, 6, 8, 2], [1, 1, 1, 1]])
    truncated = np.array([[False, False, True, False], [False] * 4])
    errors = np.array([[False] * 4, [True, False, False, False]])
    out = m.rollout_metrics(rewards, keep, lengths, truncated, errors)
    assert out["reward/mean"] == 0.75
    np.testing.assert_allclose(out["reward/std"], np.sqrt(0.75 * 0.25))
    assert out["reward/group_std_mean"] == 0.25  # (0.5 + 0) / 2
    assert out["groups/zero_std_fraction"] == 0.5 and out["groups/dropped"] == 1
    assert out["response/length_mean"] == 3.0 and out["response/length_max"] == 8
    assert out["response/truncation_rate"] == 1 / 8 and out["verifier/error_rate"] == 1 / 8


def test_flops_per_token_by_hand():
    dense = ModelConfig(
        vocab_size=10,
        hidden_size=4,
        intermediate_size=6,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=2,
    )
    # attention D·H·(2N + 2K) = 4·2·6 = 48, MLP 3·D·F = 72, per layer 120; head D·V = 40
    assert m.matmul_params_per_token(dense) == 2 * 120 + 40
    assert m.train_flops_per_token(dense, seq_len=8) == 6 * 280 + 12 * 2 * 2 * 2 * 8
    moe = dense.replace(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=3)
    # router D·E = 16, two routed experts 2·3·D·F_e = 72
    assert m.matmul_params_per_token(moe) == 2 * (48 + 16 + 72) + 40


def test_writer_truncates_rows_past_the_resumed_step(tmp_path):
    w = m.MetricsWriter(tmp_path, tensorboard=False)
    for step in (1, 2, 3, 4):
        w.write(step, {"loss": float(step)})
    w.close()
    with open(tmp_path / m.METRICS_FILE, "a") as f:
        f.write('{"step": 5, "lo')  # a row cut short by a kill
    w = m.MetricsWriter(tmp_path, tensorboard=False, resume_step=2)
    w.write(3, {"loss": 30.0})
    w.close()
    assert [(r["step"], r["loss"]) for r in m.read_metrics(tmp_path)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]
    w = m.MetricsWriter(tmp_path, tensorboard=True)  # a fresh run starts a fresh file
    assert w.tensorboard
    w.write(1, {"loss": 1.0})
    w.close()
    assert len(m.read_metrics(tmp_path)) == 1
