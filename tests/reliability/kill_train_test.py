"""kill -9 during `pivotrl train` (in-process JAX engine), `pivotrl sft` and `pivotrl export`,
then the same command again: final parameters, optimizer state and checkpoint meta are
bitwise those of an uninterrupted run; metrics.jsonl has one row per step, equal to the
uninterrupted rows; after every kill the latest checkpoint restores to a finite state and an
export folder is absent or whole.

Kill points: after a step's update, after its metrics row, before a checkpoint, in the middle
of orbax's write (a timer set at `checkpoint.before_save`), after it, while writing the resolved
config; for export, between restore and write, mid-write, and between moving an old export
aside and renaming the new one into place.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from crash import (
    base_env,
    checkpoint_state,
    comparable_metrics,
    kill_and_resume,
    planned_points,
    reference,
    run,
)

pytestmark = pytest.mark.slow
REPO_TESTS = Path(__file__).resolve().parents[1]

STEPS, LONG_STEPS = 4, 16  # checkpoints every 2 steps
TRAIN_FAST = ["checkpoint.before_save@2+0.02"]  # mid-write of step 4; metrics 3-4 redone
TRAIN_LONG = [
    "atomic.before_replace@1",  # the resolved config, before step 1
    "train.step_done@1",
    "checkpoint.saved@1",
    "train.metrics_written@1",
    "checkpoint.before_save@1",
    "checkpoint.before_save@1+0.01",
    "checkpoint.before_save@1+0.05",
    "train.step_done@2",
    "checkpoint.saved@1",
    "train.metrics_written@2",
    "checkpoint.before_save@2+0.02",
    "checkpoint.saved@1",
]
SFT_FAST = ["sft.step_done@3"]  # step 3 logged, not checkpointed
SFT_LONG = [
    "atomic.before_replace@1",
    "sft.step_done@1",
    "checkpoint.saved@1",
    "sft.step_done@1",
    "checkpoint.before_save@1",
    "checkpoint.before_save@1+0.01",
    "checkpoint.before_save@1+0.05",
    "sft.step_done@2",
    "checkpoint.saved@1",
    "sft.step_done@2",
    "checkpoint.before_save@2+0.02",
    "checkpoint.saved@1",
]
EXPORT_FAST = ["export.written@1"]  # written under the hidden name, not renamed
EXPORT_LONG = [
    "export.restored@1",
    "export.restored@1+0.01",
    "export.restored@1+0.03",
    "export.restored@1+0.06",
    "export.restored@1+0.1",
    "export.written@1",
    "export.renamed@1",  # a complete export now exists: the rest replace it
    "export.restored@1+0.02",
    "export.written@1",
    "export.old_moved@1",
    "export.renamed@1",
    "export.old_moved@1",
]


RUN_OPTIONS = [
    "--config.checkpoint.every=2",
    "--config.checkpoint.keep=2",
    "--config.log.progress=false",
    "--config.log.tensorboard=false",
]


def train_argv(assets, out, steps):
    return [
        "train",
        "--config=configs/train.py:tiny",
        f"--config.model_dir={assets / 'model'}",
        f"--config.pivots={assets / 'cands'}",
        "--config.pivots_prefix=candidates",
        f"--config.train.steps={steps}",
        "--config.train.pivots_per_step=2",
        "--config.rollout.group_size=4",
        "--config.rollout.max_new_tokens=8",
        *RUN_OPTIONS,
        "--output",
        str(out),
    ]


def sft_argv(assets, out, steps):
    return [
        "sft",
        "--config=configs/train.py:sft,tiny",
        f"--config.model_dir={assets / 'model'}",
        f"--config.trajectories={assets / 'cands'}",
        f"--config.sft.steps={steps}",
        "--config.sft.batch_size=4",
        *RUN_OPTIONS,
        "--output",
        str(out),
    ]


def assert_same_run(got_dir, ref_dir, steps):
    import jax

    from pivotrl_jax.train.metrics import read_metrics

    a, meta_a = checkpoint_state(ref_dir, steps)
    b, meta_b = checkpoint_state(got_dir, steps)
    assert meta_a == meta_b
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 5
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise
    rows = read_metrics(got_dir)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # none lost or repeated
    assert comparable_metrics(rows) == comparable_metrics(read_metrics(ref_dir))


def latest_checkpoint_is_whole(run_dir):
    """What a reader (export, a resumed run) would load: the latest complete step, finite."""
    import jax

    from pivotrl_jax.train.checkpoint import Checkpointer

    if not (run_dir / "checkpoints").exists():
        return
    with Checkpointer(run_dir / "checkpoints") as ckpt:
        step = ckpt.latest_step()
        if step is None:
            return
    state, meta = checkpoint_state(run_dir, step)
    assert meta["iteration"] == step
    for x in jax.tree.leaves(state):
        x = np.asarray(x)
        assert not np.issubdtype(x.dtype, np.floating) or np.isfinite(x).all()


def _check_run(argv_fn, plan, assets, tmp_path, steps=STEPS, random_kills=0):
    env = base_env(assets / "jax-cache")
    ref_dir, out = tmp_path / "ref", tmp_path / "killed"
    ref, passed = reference(argv_fn(assets, ref_dir, steps), env, tmp_path / "trace.txt")
    assert planned_points(plan) <= passed
    outcomes = kill_and_resume(
        argv_fn(assets, out, steps),
        env,
        plan,
        between=lambda: latest_checkpoint_is_whole(out),
        random_kills=random_kills,
        random_window_s=(8.0, ref.seconds * 0.8),
    )
    assert_same_run(out, ref_dir, steps)
    return outcomes, ref_dir


def test_train_killed_and_resumed(assets, tmp_path):
    _check_run(train_argv, TRAIN_FAST, assets, tmp_path)


def test_sft_killed_and_resumed_then_export_killed(assets, tmp_path):
    _, run_dir = _check_run(sft_argv, SFT_FAST, assets, tmp_path)
    _check_export(EXPORT_FAST, run_dir, assets, tmp_path)


@pytest.mark.long
def test_train_killed_at_many_points(assets, tmp_path):
    outcomes, _ = _check_run(train_argv, TRAIN_LONG, assets, tmp_path, LONG_STEPS, 2)
    assert sum(o.killed for o in outcomes) >= len(TRAIN_LONG)


@pytest.mark.long
def test_sft_and_export_killed_at_many_points(assets, tmp_path):
    outcomes, run_dir = _check_run(sft_argv, SFT_LONG, assets, tmp_path, LONG_STEPS, 2)
    assert sum(o.killed for o in outcomes) >= len(SFT_LONG)
    outcomes = _check_export(EXPORT_LONG, run_dir, assets, tmp_path, 2)
    assert sum(o.killed for o in outcomes) >= len(EXPORT_LONG)


def _export_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _check_export(plan, run_dir, assets, tmp_path, random_kills=0):
    """Export the finished run; kills between restore and write, mid-write, around the rename."""
    env = base_env(assets / "jax-cache")
    ref, out = tmp_path / "export-ref", tmp_path / "export"

    def argv(folder):
        return ["export", "--run", str(run_dir), "--output", str(folder)]

    done = run(argv(ref), env)
    assert done.returncode == 0, done.stderr_tail
    want = _export_files(ref)
    assert "config.json" in want and any(n.endswith(".safetensors") for n in want)

    def whole_or_absent():
        if out.exists():
            assert _export_files(out) == want

    outcomes = kill_and_resume(
        argv(out), env, plan, between=whole_or_absent, random_kills=random_kills,
        random_window_s=(3.0, 8.0),
    )  # fmt: skip
    assert _export_files(out) == want
    assert not list(tmp_path.glob(".export.*"))
    json.loads((out / "config.json").read_text())
    return outcomes


SGLANG_LONG = [
    "atomic.before_replace@1",  # the resolved config
    "sync.exported@1",  # step 1's weights exported, not yet loaded by the server
    "checkpoint.saved@1",
    "sync.exported@2",
    "train.metrics_written@1",
    "checkpoint.before_save@1+0.02",
    "train.step_done@1",
    "sync.exported@1",  # the re-sync of a resumed run
    "checkpoint.saved@1",
    "train.metrics_written@1",
    "sync.exported@3",
]


def _servers_of(model_dir) -> list[int]:
    """SGLang server processes still serving this test's model (orphans of a killed trainer)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"sglang.launch_server" in cmd and str(model_dir).encode() in cmd:
            found.append(int(proc.name))
    return found


def assert_close_run(got_dir, ref_dir, steps):
    """Equal rollouts and counters; parameters and float metrics equal within float32 noise
    (the SGLang server's logprobs, which truncated importance sampling weighs, vary in their
    last bits with how it batched the requests)."""
    import jax

    from pivotrl_jax.train.metrics import read_metrics

    a, meta_a = checkpoint_state(ref_dir, steps)
    b, meta_b = checkpoint_state(got_dir, steps)
    assert meta_a == meta_b
    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    rows_a = comparable_metrics(read_metrics(ref_dir))
    rows_b = comparable_metrics(read_metrics(got_dir))
    assert [r["step"] for r in rows_b] == list(range(1, steps + 1))
    exact = ("reward/", "response/", "groups/", "rollout/tokens", "weight_version",
             "optimizer_step", "update_skipped", "nonfinite_total")  # fmt: skip
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k.startswith(exact) or k == "step":
                assert ra[k] == rb[k], k
            else:
                np.testing.assert_allclose(ra[k], rb[k], rtol=1e-3, atol=1e-5, err_msg=k)


@pytest.mark.long
@pytest.mark.sglang
def test_train_with_sglang_killed_at_many_points(assets, tmp_path):
    """`pivotrl train` with its own SGLang server, greedy rollouts (reproducible on CPU) with an
    entropy bonus so every step changes the weights and syncs them; the trainer is killed at
    11 points, including between a weight export and the server loading it; no server outlives
    a killed trainer."""
    sys.path.insert(0, str(REPO_TESTS / "rollout"))
    from sglang_support import SGLANG_PYTHON, require_sglang_env

    require_sglang_env()
    steps = 8

    def argv(assets, out, steps):
        return [*train_argv(assets, out, steps), "--config.engine.name=sglang",
                f"--config.engine.python={SGLANG_PYTHON}", "--config.rollout.temperature=0.0",
                "--config.train.drop_zero_variance=false",
                "--config.loss.entropy_coef=0.05"]  # fmt: skip

    env = base_env(assets / "jax-cache")
    ref_dir, out = tmp_path / "ref", tmp_path / "killed"
    _, passed = reference(argv(assets, ref_dir, steps), env, tmp_path / "trace.txt")
    assert planned_points(SGLANG_LONG) <= passed

    def between():
        deadline = time.monotonic() + 30
        while _servers_of(assets / "model") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _servers_of(assets / "model") == []  # died with the trainer
        latest_checkpoint_is_whole(out)

    outcomes = kill_and_resume(argv(assets, out, steps), env, SGLANG_LONG, between=between)
    assert sum(o.killed for o in outcomes) >= len(SGLANG_LONG)
    assert_close_run(out, ref_dir, steps)
