"""Two JAX processes (4 simulated CPU devices each, gloo collectives, `jax.distributed` on
localhost) run `pivotrl train` (with a checkpoint and a resume), `pivotrl export` and
`pivotrl profile` like one process on 8 devices: the same metrics records, parameters, exported
files and profiled records; each process draws its own pivots; process 0 alone writes the
shared outputs; each process's loader state is saved in the checkpoints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from pivotrl_jax.data.turns import unit_hash

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "core" / "multiprocess_worker.py"
# Metrics that depend only on the sampled tokens and rewards: equal exactly. The rest (losses,
# norms, KL) are sums whose order differs between the two layouts: equal to float32 rounding.
# Timings, and the row layout (each process rounds its own rows), are not compared.
EXACT = re.compile(r"^(reward|groups|response|rollout/(tokens|turns)$|update/tokens$|verifier)")
NOISY = re.compile(r"^time/|per_s$|^update/(mfu|rows|pad_fraction|prompt_tokens_shared)$")


def _env(root: Path, devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTRL_")}
    env.update(
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        # The resumed run compiles what the first one did: load it from the cache instead.
        JAX_COMPILATION_CACHE_DIR=str(root.with_name(root.name + "-jax-cache")),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        **extra,
    )
    return env


def _report(out: str) -> dict:
    line = next(ln for ln in out.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def run_one(root: Path, commands: list[list[str]]) -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(root), json.dumps(commands)],
        cwd=REPO,
        env=_env(root, 8),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _report(proc.stdout)


def run_two(root: Path, commands: list[list[str]]) -> list[dict]:
    port = 20000 + int(unit_hash(os.getpid(), "multiprocess-port") * 20000)
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(root), json.dumps(commands)],
            cwd=REPO,
            env=_env(
                root,
                4,
                PIVOTRL_DISTRIBUTED="1",
                PIVOTRL_COORDINATOR=f"127.0.0.1:{port}",
                PIVOTRL_NUM_PROCESSES="2",
                PIVOTRL_PROCESS_ID=str(pid),
                PIVOTRL_CPU_COLLECTIVES="gloo",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in range(2)
    ]
    outs = [p.communicate(timeout=1200)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n----\n".join(o[-4000:] for o in outs)
    return [_report(o) for o in outs]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from transformers import AutoTokenizer

    from pivotrl_jax import cli
    from pivotrl_jax.data import records as records_io

    root = tmp_path_factory.mktemp("multiprocess")
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
    for i in range(16):
        msgs = [{"role": "user", "content": f"task number {i}: list the files"}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        recs.append(
            {
                "id": f"p{i:02d}",
                "prompt_ids": tok(text, add_special_tokens=False)["input_ids"],
                "messages": msgs,
                "tools": [],
                "expected_action": {"type": "message", "content": "ok"},
                "domain": "",
                "trajectory_id": f"t{i}",
                "verifier": "test_even_length",
            }
        )
    records_io.write_records(root / "pivots", recs, prefix="pivots-train")
    records_io.write_records(root / "candidates", recs, prefix="candidates")
    return root


def commands(assets: Path, out: Path, resume: bool) -> list[list[str]]:
    train = [
        "train",
        "--config=configs/train.py:tiny",
        f"--config.model_dir={assets / 'model'}",
        f"--config.pivots={assets / 'pivots'}",
        "--config.log.progress=false",
        "--config.rollout.max_new_tokens=12",
        "--config.checkpoint.every=1",
        "--output",
        str(out / "run"),
    ]
    steps = [1, 2] if resume else [2]
    return [
        *[[*train, f"--config.train.steps={s}"] for s in steps],
        ["export", "--run", str(out / "run"), "--output", str(out / "hf")],
        [
            "profile",
            f"--config.model_dir={assets / 'model'}",
            "--config.profile.k=4",
            "--config.profile.max_new_tokens=12",
            "--config.profile.score_truncated=True",  # the random model's samples are cut
            "--config.profile.candidates_per_call=4",
            "--candidates",
            str(assets / "candidates"),
            "--output",
            str(out / "profiled"),
            "--noprogress",
        ],
    ]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_export_and_profile_like_one(assets, tmp_path):
    from pivotrl_jax.pivots.profile import read_profiled

    one, two = tmp_path / "one", tmp_path / "two"
    ref = run_one(one, commands(assets, one, resume=False))
    reports = run_two(two, commands(assets, two, resume=True))
    print("seconds per command:", ref["seconds"], [r["seconds"] for r in reports])
    assert ref["codes"] == [0, 0, 0] and all(r["codes"] == [0, 0, 0, 0] for r in reports)

    # Pivots: process k draws the k-th half of each of the one-process run's batches.
    # (The two-process run drew one batch, then the second after the resume.)
    assert len(ref["drawn"]) == 2
    for it, batch in enumerate(ref["drawn"]):
        halves = [r["drawn"][it] for r in reports]
        assert halves == [batch[:2], batch[2:]]

    # Metrics: one row per iteration, equal (the resumed run continues at iteration 2).
    got, want = _metrics(two / "run"), _metrics(one / "run")
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2]
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key in w:
            if NOISY.search(key):
                continue
            if EXACT.search(key):
                assert g[key] == w[key], (w["step"], key)
            else:
                assert g[key] == pytest.approx(w[key], rel=1e-4, abs=1e-4), (w["step"], key)
    assert any(r["update/tokens"] > 0 for r in want)  # the runs did learn something

    # Exported parameters and files.
    names = sorted(p.name for p in (one / "hf").iterdir())
    assert sorted(p.name for p in (two / "hf").iterdir()) == names
    for name in names:
        a, b = one / "hf" / name, two / "hf" / name
        if name.endswith(".safetensors"):
            ta, tb = load_file(a), load_file(b)
            assert sorted(ta) == sorted(tb)
            for k in ta:
                # Adam divides by sqrt(v): where a gradient is near 0, float32 rounding of a
                # different reduction order moves an element by a fraction of one step (lr 1e-4).
                np.testing.assert_allclose(tb[k], ta[k], rtol=0, atol=2e-5, err_msg=k)
                assert np.mean(np.abs(tb[k] - ta[k]) > 1e-6) < 1e-3, k
        else:
            assert a.read_bytes() == b.read_bytes(), name
    base = load_file(assets / "model" / "model-00001-of-00001.safetensors")
    trained = load_file(next((one / "hf").glob("*.safetensors")))
    assert max(float(np.abs(trained[k] - base[k]).max()) for k in base) > 1e-4

    # Profiled records: identical, record for record.
    assert read_profiled(str(two / "profiled")) == read_profiled(str(one / "profiled"))

    # Each process's loader state is in every checkpoint.
    for step in (1, 2):
        loader = two / "run" / "checkpoints" / str(step) / "loader"
        states = [json.loads((loader / f"process_{i}-of-2.json").read_text()) for i in range(2)]
        assert states == [{"next_index": step}] * 2

    # Process 0 writes the shared outputs; process 1 only its own profiled slice.
    shared = [w for w in reports[0]["written"] if not w.startswith("run/checkpoints/")]
    assert any(w.startswith("run/metrics.jsonl") for w in shared)
    assert any(w.startswith("run/tensorboard/") for w in shared)
    assert any(w.startswith(".hf.partial/") for w in shared)  # export: staged, then renamed
    own = [w for w in reports[1]["written"] if not w.startswith("run/checkpoints/")]
    assert own and all(re.match(r"profiled/.*p00001-of-00002", w) for w in own), own
