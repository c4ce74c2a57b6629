"""Runs that meet a verifier that hangs or raises, and a training run whose updates go
non-finite.

- A verifier that hangs (a busy loop) or raises on every odd-length answer: `pivotrl profile`
  and `pivotrl train` finish, the hung calls are cut at the time limit and counted as
  `timeout`, the raising ones counted as `error:RuntimeError`, each scoring 0.
- A learning rate of 1e30 sends the weights to ~1e30 after one update, so the next forward
  pass overflows: every later update has a non-finite loss or gradient. Each is skipped (the
  parameters stay as they were) and counted; the run stops once the count passes
  `train.max_nonfinite`, exit code 1 and a message saying so, and every checkpoint on disk
  restores to finite parameters and optimizer moments. `pivotrl sft` the same.
"""

import json
import time

import numpy as np
import pytest
from crash import checkpoint_state

from pivotrl_jax import cli
from pivotrl_jax.train.checkpoint import Checkpointer
from pivotrl_jax.train.metrics import read_metrics

pytestmark = pytest.mark.slow


def _profile(assets, out, *extra):
    return ["profile", "--candidates", str(assets / "cands"), "--output", str(out),
            f"--config.model_dir={assets / 'model'}", "--noprogress", "--config.profile.k=2",
            "--config.profile.max_new_tokens=6", "--config.profile.candidates_per_call=16",
            "--config.profile.score_truncated=True",  # the random model's samples are cut
            *extra]  # fmt: skip


def _train(assets, out, *extra):
    return ["train", "--config=configs/train.py:tiny", f"--config.model_dir={assets / 'model'}",
            f"--config.pivots={assets / 'cands'}", "--config.pivots_prefix=candidates",
            "--config.train.pivots_per_step=2", "--config.rollout.group_size=4",
            "--config.rollout.max_new_tokens=6", "--config.log.progress=false",
            "--config.log.tensorboard=false", "--output", str(out), *extra]  # fmt: skip


def _assert_finite_checkpoints(run, steps):
    import jax

    for step in steps:
        state, _ = checkpoint_state(run, step)
        for leaf in jax.tree.leaves((state["params"], state["opt_state"])):
            leaf = np.asarray(leaf)
            if np.issubdtype(leaf.dtype, np.floating):
                assert np.isfinite(leaf).all(), step


def test_a_hanging_or_raising_verifier_is_cut_and_counted(assets, tmp_path, monkeypatch):
    import pivotrl_with_test_verifier  # noqa: F401

    monkeypatch.setenv("RELIABILITY_VERIFIER_FAULT", "misbehave")  # hangs or raises on odd
    start = time.monotonic()
    argv = _profile(assets, tmp_path / "prof", "--config.profile.verifier_time_limit_s=0.2")
    assert cli.main(argv) == 0
    summary = json.loads((tmp_path / "prof" / "summary-p00000-of-00001.json").read_text())
    reasons = summary["verifier"]["reasons"]
    assert reasons["timeout"] > 0 and reasons["error:RuntimeError"] > 0
    assert reasons["timeout"] + reasons["error:RuntimeError"] + reasons.get("parity", 0) == 96
    assert summary["rollouts"] == 96
    elapsed = time.monotonic() - start

    argv = _train(assets, tmp_path / "run", "--config.train.steps=2",
                  "--config.verifier_time_limit_s=0.2")  # fmt: skip
    assert cli.main(argv) == 0
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    assert sum(r["verifier/error_rate"] for r in rows) > 0
    # Each hung call was cut near its limit: the timed-out calls cost about 0.2 s each.
    timing = summary["verifier"]["timing"]["test_parity"]
    assert timing["max_s"] < 2.0
    assert reasons["timeout"] * 0.2 < elapsed


def test_non_finite_updates_are_skipped_counted_and_stop_the_run(assets, tmp_path, capsys):
    import pivotrl_with_test_verifier  # noqa: F401

    run = tmp_path / "run"
    argv = _train(assets, run, "--config.train.steps=8", "--config.optim.learning_rate=1e30",
                  "--config.train.max_nonfinite=2", "--config.train.drop_zero_variance=false",
                  "--config.checkpoint.every=1", "--config.checkpoint.keep=8")  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "3 non-finite updates (limit 2)" in err and "Traceback" not in err
    rows = read_metrics(run)
    skipped = [r["step"] for r in rows if r["update_skipped"]]
    assert len(skipped) == 3 and rows[-1]["step"] == skipped[-1]  # stopped at the third
    assert [r["nonfinite_total"] for r in rows if r["update_skipped"]] == [1, 2, 3]
    assert rows[0]["update_skipped"] == 0  # the first update went through (to ~1e30)
    with Checkpointer(run / "checkpoints") as ckpt:
        steps = ckpt.all_steps()
    assert steps and max(steps) == rows[-1]["step"] - 1  # nothing saved at the stopping step
    _assert_finite_checkpoints(run, steps)
    # A skipped update leaves the parameters exactly as they were.
    if len(steps) >= 2 and rows[steps[-1] - 1]["update_skipped"]:
        a, _ = checkpoint_state(run, steps[-2])
        b, _ = checkpoint_state(run, steps[-1])
        import jax

        for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sft_non_finite_updates_are_skipped_counted_and_stop_the_run(assets, tmp_path, capsys):
    run = tmp_path / "sft"
    argv = ["sft", "--config=configs/train.py:sft,tiny", f"--config.model_dir={assets / 'model'}",
            f"--config.trajectories={assets / 'cands'}", "--config.sft.steps=10",
            "--config.sft.batch_size=4", "--config.optim.learning_rate=1e30",
            "--config.optim.warmup_steps=0", "--config.train.max_nonfinite=2",
            "--config.checkpoint.every=1", "--config.checkpoint.keep=10",
            "--config.log.progress=false", "--config.log.tensorboard=false",
            "--output", str(run)]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "3 non-finite updates (limit 2)" in err and "Traceback" not in err
    rows = read_metrics(run)
    assert [r["nonfinite_total"] for r in rows if r["update_skipped"]] == [1, 2, 3]
    assert rows[-1]["update_skipped"] == 1 and len(rows) < 10  # stopped at the third
    with Checkpointer(run / "checkpoints") as ckpt:
        steps = ckpt.all_steps()
    assert max(steps, default=0) == rows[-1]["step"] - 1  # nothing saved at the stopping step
    _assert_finite_checkpoints(run, steps)
