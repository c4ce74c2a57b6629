"""`pivotrl train` end to end on a tiny model: metrics, dropped groups, a frozen reference, and
exact resume (6 iterations = 3, a killed process, 3 more; bitwise on CPU)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
# A deterministic verifier with mixed outcomes on a random model: an assistant message of even
# length scores 1; the expected content "always" makes every sample score 1 (a zero-std group).
VERIFIER = textwrap.dedent(
    """
    import dataclasses
    from pivotrl_jax.rewards.base import VERIFIERS, result

    @dataclasses.dataclass(frozen=True)
    class EvenLength:
        def verify(self, state, expected, action):
            if expected.text == "always":
                return result(1.0, "always")
            return result(float(action.kind == "message" and len(action.text) % 2 == 0), "parity")

    if "test_even_length" not in VERIFIERS:
        VERIFIERS.register("test_even_length", EvenLength)
    """
)
RUNNER = VERIFIER + textwrap.dedent(
    """
    import sys
    from pivotrl_jax import cli
    sys.exit(cli.main(["train", *sys.argv[1:]]))
    """
)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from transformers import AutoTokenizer

    from pivotrl_jax import cli
    from pivotrl_jax.data import records as records_io

    root = tmp_path_factory.mktemp("train_loop")
    model = root / "model"
    args = [
        "init-model",
        "--config=configs/model.py:tiny",
        "--config.model.num_hidden_layers=2",
        "--config.tokenizer.vocab_size=400",
        "--output",
        str(model),
    ]
    assert cli.main(args) == 0
    tok = AutoTokenizer.from_pretrained(model)
    recs = []
    for i in range(8):
        msgs = [{"role": "user", "content": f"task number {i}: list the files"}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        recs.append(
            {
                "id": f"p{i}",
                "prompt_ids": tok(text, add_special_tokens=False)["input_ids"],
                "messages": msgs,
                "tools": [],
                "expected_action": {"type": "message", "content": "always" if i < 2 else "ok"},
                "domain": "",
                "trajectory_id": f"t{i}",
                "verifier": "test_even_length",
            }
        )
    records_io.write_records(root / "pivots", recs, prefix="pivots-train")
    return root


def overrides(assets: Path, *extra: str) -> list[str]:
    return [
        "--config=configs/train.py:tiny",
        f"--config.model_dir={assets / 'model'}",
        f"--config.pivots={assets / 'pivots'}",
        "--config.log.progress=false",
        *extra,
    ]


def four_steps_with_kl(assets: Path, *extra: str):
    """configs/train.py:tiny,kl on the assets: 4 steps of 2 micro-batches, `extra` overrides."""
    from pivotrl_jax import config as config_lib

    return config_lib.load_config(
        "configs/train.py:tiny,kl",
        [
            f"model_dir={assets / 'model'}",
            f"pivots={assets / 'pivots'}",
            "log.progress=False",
            "train.steps=4",
            "train.micro_batches=2",
            *extra,
        ],
    )


def in_process_parts(cfg):
    """The loop's parts wired in this process: pi_0 params, grain pivots, the JAX engine."""
    from transformers import AutoTokenizer

    from pivotrl_jax.commands.train import scorer_from_config
    from pivotrl_jax.data import loader
    from pivotrl_jax.models.sharding import single_device_mesh
    from pivotrl_jax.rollout.jax_engine import JaxEngine
    from pivotrl_jax.rollout.text import completion_text
    from pivotrl_jax.train import loop
    from pivotrl_jax.train.grpo_config import grpo_config
    from pivotrl_jax.train.parts import build_parts

    g = grpo_config(cfg)
    mesh = single_device_mesh()
    tok = AutoTokenizer.from_pretrained(g.model_dir)
    params, model_cfg = loop.initial_params(g.model_dir, mesh, {})
    data = iter(
        loader.dataset_from_dir(
            g.pivots,
            loader.LoaderConfig(
                batch_size=g.pivots_per_step,
                max_prompt_len=g.max_prompt_len,
                pad_id=tok.pad_token_id,
            ),
            prefix=g.pivots_prefix,
        )
    )
    engine = JaxEngine.from_pretrained(g.model_dir, mesh=mesh)
    parts = build_parts(
        g,
        mesh,
        engine,
        lambda ids: completion_text(tok, ids),
        (tok.eos_token_id,),
        scorer_from_config(cfg),
        data,
        params,
        model_cfg,
    )
    return parts, params


def test_train_in_process_metrics_dropped_groups_and_frozen_reference(assets, tmp_path):
    import jax
    import ml_collections  # noqa: F401

    from pivotrl_jax.train import loop
    from pivotrl_jax.train.metrics import read_metrics

    exec(VERIFIER, {})
    cfg = four_steps_with_kl(assets, "train.reference_dtype=bfloat16")
    parts, params = in_process_parts(cfg)
    pi0 = jax.device_get(params)
    summary = loop.run(parts, tmp_path)
    assert summary["optimizer_steps"] == 4 and summary["weight_version"] == 4
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in (
        "reward/mean",
        "reward/std",
        "groups/zero_std_fraction",
        "kl/mean",
        "entropy/mean",
        "clip/low_fraction",
        "clip/high_fraction",
        "ratio/mean",
        "ratio/max",
        "mismatch/mean_abs",
        "mismatch/max_abs",
        "response/length_mean",
        "response/truncation_rate",
        "verifier/error_rate",
        "update/tokens_per_s",
        "time/rollout",
        "time/verify",
        "time/reference",
        "time/update",
        "time/sync",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    # 8 pivots, 4 per batch: 4 batches = 2 epochs, each holding the 2 "always" pivots once.
    assert sum(r["groups/dropped"] for r in rows) == 4
    assert all(r["groups/zero_std_fraction"] == r["groups/dropped"] / 4 for r in rows)
    # The engine samples with the trainer's weights: its logprobs match the trainer's.
    assert max(r["mismatch/max_abs"] for r in rows) < 1e-4
    assert rows[-1]["kl/mean"] > 0  # the policy moved away from pi_0 (lr 1e-4, 4 steps)
    assert (tmp_path / "tensorboard").is_dir()
    # The frozen reference is pi_0 (stored in bfloat16), untouched by training.
    import jax.numpy as jnp

    for a, b in zip(jax.tree.leaves(parts.reference.params), jax.tree.leaves(pi0)):
        assert a.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(a), np.asarray(jnp.asarray(b, jnp.bfloat16)))
    moved = max(
        float(np.max(np.abs(np.asarray(a) - b)))
        for a, b in zip(jax.tree.leaves(parts.state.params), jax.tree.leaves(pi0))
    )
    assert moved > 1e-5


def test_reprofiling_excludes_pivots_that_lost_their_signal(assets, tmp_path):

    from pivotrl_jax import config as config_lib
    from pivotrl_jax.train import loop
    from pivotrl_jax.train.metrics import read_metrics

    exec(VERIFIER, {})
    cfg = config_lib.load_config(
        "configs/train.py:tiny",
        [
            f"model_dir={assets / 'model'}",
            f"pivots={assets / 'pivots'}",
            "log.progress=False",
            "train.steps=4",
            "train.kl_metric=False",
            "reprofile.enabled=True",
            "reprofile.std_below=2.0",
            "reprofile.patience=2",
            "reprofile.lambda_diff=1.01",
        ],
    )
    parts, _ = in_process_parts(cfg)
    assert parts.reference is None  # beta = 0 and no KL metric: no reference is built
    loop.run(parts, tmp_path)
    rows = read_metrics(tmp_path)
    # Iterations 1-2 cover all 8 pivots; re-profiling after 2 finds the "always" pivots
    # (p0, p1) with zero variance under the current policy and excludes them.
    assert rows[1]["reprofile/profiled"] == 8
    assert {"p0", "p1"} <= parts.progress.excluded
    assert rows[3]["reprofile/excluded_total"] == len(parts.progress.excluded)
    assert parts.progress.rounds == 2


def _run(runner: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(runner), *args], cwd=REPO, capture_output=True, text=True, timeout=1200
    )


def _final_state(run_dir: Path, step: int):
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(run_dir / "checkpoints") as mgr:
        out = mgr.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
    return out.state, out.meta


def _comparable(rows):
    skip = ("time/", "tokens_per_s", "mfu")
    return [{k: v for k, v in r.items() if not any(s in k for s in skip)} for r in rows]


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(assets, tmp_path):
    import jax

    from pivotrl_jax.train.metrics import read_metrics

    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    full, cut = tmp_path / "full", tmp_path / "cut"
    out = _run(runner, [*overrides(assets), "--output", str(full)])
    assert out.returncode == 0, out.stderr[-3000:]

    # Kill (SIGKILL) the second run as soon as its step-3 checkpoint is complete.
    proc = subprocess.Popen(
        [sys.executable, str(runner), *overrides(assets), "--output", str(cut)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900
    while not (cut / "checkpoints" / "3" / "_CHECKPOINT_METADATA").exists():
        assert proc.poll() is None and time.time() < deadline, "no step-3 checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "checkpoints" / "6").exists()
    out = _run(runner, [*overrides(assets), "--output", str(cut)])
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == 3 and summary["optimizer_steps"] == 6

    a, meta_a = _final_state(full, 6)
    b, meta_b = _final_state(cut, 6)
    assert meta_a == meta_b
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise
    assert _comparable(read_metrics(full)) == _comparable(read_metrics(cut))


def test_compile_rows_compiles_the_step_up_front_and_leaves_the_state(assets, tmp_path):
    """train.compile_rows: the step and log-prob programs for those row counts are compiled
    before the first iteration on a copy of the state (the run's state is bitwise unchanged),
    and the run's own batches, of those counts, compile nothing more."""
    import jax

    from pivotrl_jax.train import loop
    from pivotrl_jax.train.update import compile_rows

    exec(VERIFIER, {})
    cfg = four_steps_with_kl(assets, "train.length_buckets=(256,)", "train.compile_rows=(2, 4)")
    parts, _ = in_process_parts(cfg)
    before = [np.asarray(x).copy() for x in jax.tree.leaves(parts.state)]
    compile_rows(parts, parts.cfg.compile_rows)
    for a, b in zip(jax.tree.leaves(parts.state), before):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert parts.train_step.jitted._cache_size() == 2
    loop.run(parts, tmp_path)  # a batch of another row count would compile a third program
    assert parts.train_step.jitted._cache_size() == 2
    with pytest.raises(ValueError, match="one row length"):
        dataclasses.replace(parts.cfg, length_buckets=(128, 256))
    with pytest.raises(ValueError, match="one row length"):
        dataclasses.replace(parts.cfg, length_buckets=())
