"""Load runs: memory stays flat while `pivotrl profile` and `pivotrl train` run long.

    python benchmarks/reliability_load.py profile [--sizes 10000,30000,100000]
    python benchmarks/reliability_load.py train [--steps 1000]
    python benchmarks/reliability_load.py demo-train [--steps 1000] [--demo runs/demo]
    python benchmarks/reliability_load.py all                      # what `make reliability` runs

profile: a tiny random dense model (1 layer, 300-token vocabulary) and N synthetic candidates
(prompts of 12-40 token ids, K = 2 samples of 4 tokens, the `exact` verifier); one `pivotrl
profile` process per N, its peak RSS read from the kernel when it exits (wait4), all sharing
one compilation cache that a first run of 1000 candidates fills (compiling costs more memory
than profiling). Each run also reports its high-water RSS at the moments 1k, 10k, 30k and 100k
candidates were done. Flat: the peak at the largest N is within 15% of the peak at the
smallest.

train: a demo-like tiny Qwen3-MoE (2 layers, 8 experts top-2, the demo's learning rate, micro-
batches and checkpointing) on 64 pivots, `--steps` GRPO iterations in one `pivotrl train`
process; its RSS is sampled from /proc every second and matched to the step metrics.jsonl has
reached. Flat: after the first 10% of the steps (compilation, allocator warm-up), the median RSS
of the last fifth of the samples is less than 64 MiB above that of the first fifth, and the
least-squares slope is under 20 MiB per 1000 steps.

demo-train: the demo's own GRPO run (configs/demo.py's settings, its pi_0 and pivots from a
finished `make demo` folder) for `--steps` iterations, measured and judged the same way.

Prints one JSON object per run and a last one with `"flat": true|false`; exits 1 if not flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}


def _pivotrl(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pivotrl_jax.cli", *argv]


def _run_measured(cmd: list[str], sample=None) -> dict:
    """Run `cmd`; its peak RSS (wait4) and wall time; `sample(pid)` is called every second."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    done = threading.Event()
    if sample is not None:

        def loop():
            while not done.wait(1.0):
                sample(proc.pid)

        threading.Thread(target=loop, daemon=True).start()
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{err.decode()[-3000:]}")
    return {
        "wall_s": round(time.monotonic() - start, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "stdout": out.decode(),
    }


def _init_model(folder: Path, variant: str, *extra: str) -> None:
    subprocess.run(
        _pivotrl("init-model", f"--config=configs/model.py:{variant}",
                 "--config.tokenizer.vocab_size=300", *extra, "--output", str(folder)),
        cwd=REPO, env=ENV, check=True, capture_output=True,
    )  # fmt: skip


def _candidates(folder: Path, n: int, vocab: int, seed: int = 0) -> None:
    from pivotrl_jax.data import records

    rng = np.random.default_rng(seed)

    def rows():
        for i in range(n):
            yield {
                "id": f"c{i:07d}",
                "trajectory_id": f"t{i // 4:07d}",
                "domain": "load",
                "kind": "message",
                "verifier": "exact",
                "messages": [{"role": "user", "content": f"question {i}"}],
                "tools": [],
                "expected_action": {"type": "message", "content": f"answer {i % 97}"},
                "prompt_ids": rng.integers(3, vocab, rng.integers(12, 41)).tolist(),
            }

    records.write_records(folder, rows(), shard_size=1000, prefix="candidates")


def profile_load(sizes: list[int], work: Path) -> dict:
    ENV["JAX_COMPILATION_CACHE_DIR"] = str(work / "jax-cache")  # compile once for all sizes
    ENV["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    model = work / "model"
    _init_model(model, "tiny", "--config.model.num_hidden_layers=1")
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]

    per_call = 256

    def one(n: int) -> dict:
        cands, out = work / f"cands-{n}", work / f"prof-{n}"
        _candidates(cands, n, vocab)
        argv = _pivotrl("profile", "--candidates", str(cands), "--output", str(out),
                        f"--config.model_dir={model}", "--noprogress", "--config.profile.k=2",
                        "--config.profile.max_new_tokens=4",
                        f"--config.profile.candidates_per_call={per_call}",
                        "--config.engine.max_batch_size=512")  # fmt: skip
        hwm: list[tuple[int, float]] = []  # (candidates journaled, high-water RSS MiB so far)

        def sample(pid: int) -> None:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                kib = next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]
                journal = out / "journal-p00000-of-00001.jsonl"
                done = journal.read_bytes().count(b"\n") * per_call if journal.exists() else 0
            except (OSError, StopIteration):
                return
            hwm.append((done, int(kib) / 1024))

        res = _run_measured(argv, sample)
        summary = json.loads(res.pop("stdout").strip().splitlines()[-1])
        assert summary["candidates"] == n, summary
        at = {m: round(max((r for d, r in hwm if d <= m), default=0.0), 1)
              for m in (1000, 10000, 30000, 100000) if m <= n}  # fmt: skip
        return {"run": "profile", "candidates": n, **res,
                "candidates_per_s": round(n / res["wall_s"], 1),
                "peak_rss_mib_by_candidates_done": at}  # fmt: skip

    one(1000)  # fills the compilation cache; not reported
    runs = []
    for n in sizes:
        runs.append(one(n))
        print(json.dumps(runs[-1]), flush=True)
    peaks = [r["peak_rss_mib"] for r in runs]
    return {"run": "profile", "sizes": sizes, "peak_rss_mib": peaks,
            "ratio_largest_to_smallest": round(peaks[-1] / peaks[0], 3),
            "flat": peaks[-1] <= 1.15 * peaks[0]}  # fmt: skip


def train_load(steps: int, work: Path) -> dict:
    model = work / "model-moe"
    _init_model(model, "tiny-moe", "--config.model.num_hidden_layers=2")
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    _candidates(work / "pivots", 64, vocab, seed=1)
    run = work / "run"
    argv = _pivotrl("train", "--config=configs/train.py:tiny", f"--config.model_dir={model}",
                    f"--config.pivots={work / 'pivots'}", "--config.pivots_prefix=candidates",
                    f"--config.train.steps={steps}", "--config.train.pivots_per_step=4",
                    "--config.train.micro_batches=2", "--config.rollout.group_size=4",
                    "--config.rollout.max_new_tokens=16", "--config.optim.learning_rate=1e-4",
                    "--config.train.drop_zero_variance=false", "--config.loss.entropy_coef=0.01",
                    "--config.checkpoint.every=50",
                    "--config.log.progress=false", "--output", str(run))  # fmt: skip
    return {"run": "train", **_measured_train(argv, run, steps)}


def demo_train_load(steps: int, work: Path, demo: Path) -> dict:
    """The demo's own GRPO run (configs/demo.py: its pi_0 and pivots in the finished demo folder
    `demo`, its settings) for `steps` iterations."""
    from pivotrl_jax import config as config_lib
    from pivotrl_jax.demo import train_argv

    for need in (demo / "base" / "model", demo / "pivots"):
        if not need.exists():
            raise SystemExit(f"{need} is missing: run `make demo` first, or pass --demo")
    c = config_lib.load_config("configs/demo.py", [f"train.steps={steps}"])
    run = work / "demo-run"
    argv = _pivotrl(*train_argv(c, demo / "base" / "model", demo / "pivots", run, False))
    return {"run": "demo_train", **_measured_train(argv, run, steps)}


def _measured_train(argv: list[str], run: Path, steps: int) -> dict:
    """Runs `argv` (a `pivotrl train` writing `run`), sampling its RSS against the steps done."""
    samples: list[tuple[int, float]] = []  # (steps done, RSS MiB)

    def sample(pid: int) -> None:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
            done = (run / "metrics.jsonl").read_text().count("\n")
        except (OSError, StopIteration):
            return
        samples.append((done, rss / 1024))

    res = _run_measured(argv, sample)
    res.pop("stdout")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == steps
    warm = [(s, r) for s, r in samples if s >= steps // 10]
    xs, ys = np.array([s for s, _ in warm], float), np.array([r for _, r in warm])
    slope = float(np.polyfit(xs, ys, 1)[0] * 1000) if len(warm) > 2 else float("nan")
    # Medians of the samples in the first and the last fifth after warm-up: RSS rises for a
    # moment during each checkpoint save, which is not growth.
    early = np.median(ys[xs <= np.quantile(xs, 0.2)])
    late = np.median(ys[xs >= np.quantile(xs, 0.8)])
    growth = float(late - early)
    by_step = {}
    for s, r in samples:
        by_step[(s // max(steps // 10, 1)) * max(steps // 10, 1)] = round(r, 1)
    out = {"steps": steps, **res,
           "steps_per_s": round(steps / res["wall_s"], 2),
           "rss_mib_early_median": round(float(early), 1),
           "rss_mib_late_median": round(float(late), 1),
           "rss_growth_after_warmup_mib": round(growth, 1),
           "rss_slope_mib_per_1000_steps": round(slope, 1),
           "rss_mib_by_step": by_step,
           "flat": bool(growth < 64 and slope < 20)}  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["profile", "train", "demo-train", "all"])
    ap.add_argument("--demo", default="runs/demo", help="demo-train: a finished demo folder")
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--workdir", default="", help="keep the run folders here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        if args.what in ("profile", "all"):
            results.append(profile_load([int(x) for x in args.sizes.split(",")], work))
            print(json.dumps(results[-1]), flush=True)
        if args.what in ("train", "all"):
            results.append(train_load(args.steps, work))
            print(json.dumps(results[-1]), flush=True)
        if args.what == "demo-train":
            results.append(demo_train_load(args.steps, work, Path(args.demo).resolve()))
            print(json.dumps(results[-1]), flush=True)
    flat = all(r["flat"] for r in results)
    print(json.dumps({"flat": flat}))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
