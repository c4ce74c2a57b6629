"""Crash-and-resume harness: run a `pivotrl` command in a subprocess, kill it with SIGKILL at
planned points (`PIVOTRL_FAULT`, see pivotrl_jax/faults.py) or at random times, check what a
reader sees after each kill, run the same command again until it completes.

    ref = run(argv, env, trace=tmp / "trace.txt")          # uninterrupted, records its points
    outcomes = kill_and_resume(argv, env, ["train.step_done@1", "checkpoint.saved@1", ...],
                               between=check_readable)
    # every planned kill landed (the process died of SIGKILL); the last run exited 0
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "pivotrl_with_test_verifier.py"
KILLED = -signal.SIGKILL


@dataclasses.dataclass(frozen=True)
class Outcome:
    kill: str  # the fault spec, "random@<seconds>", or "" for a run left to finish
    returncode: int
    seconds: float
    stderr_tail: str

    @property
    def killed(self) -> bool:
        return self.returncode == KILLED


def base_env(cache_dir: Path) -> dict[str, str]:
    """The subprocess environment: this checkout first on the path, offline, one persistent
    JAX compilation cache (restarts load compiled programs instead of compiling again)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTRL_FAULT")}
    env.update(
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return env


def run(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    fault: str = "",
    trace: Path | None = None,
    kill_after_s: float | None = None,
    timeout_s: float = 900,
) -> Outcome:
    """One `pivotrl` process (through the test-verifier runner); `fault` plans a SIGKILL inside
    it, `kill_after_s` sends one from outside."""
    env = dict(env)
    if fault:
        env["PIVOTRL_FAULT"] = fault
    if trace is not None:
        env["PIVOTRL_FAULT_TRACE"] = str(trace)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(timeout=kill_after_s if kill_after_s is not None else timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        if kill_after_s is None:
            raise AssertionError(f"{argv[0]} ran past {timeout_s} s") from None
    kill = fault or (f"random@{kill_after_s:.2f}s" if kill_after_s is not None else "")
    tail = err.decode(errors="replace")[-3000:]
    return Outcome(kill, proc.returncode, time.monotonic() - start, tail)


def kill_and_resume(
    argv: Sequence[str],
    env: dict[str, str],
    faults: Sequence[str],
    *,
    between: Callable[[], None] = lambda: None,
    random_kills: int = 0,
    random_window_s: tuple[float, float] = (0.0, 0.0),
    seed: int = 0,
) -> list[Outcome]:
    """Run `argv` once per planned fault (each must kill it), then `random_kills` times with an
    external SIGKILL at a seeded random time in `random_window_s` (those may land after the run
    finished), then to completion. `between()` runs after every kill: what a reader of the
    outputs sees must be whole (or refused cleanly)."""
    outcomes = []
    for fault in faults:
        out = run(argv, env, fault=fault)
        assert out.killed, f"{fault!r} did not kill {argv[0]} (exit {out.returncode}):\n" + (
            out.stderr_tail
        )
        outcomes.append(out)
        between()
    rng = random.Random(seed)
    for _ in range(random_kills):
        out = run(argv, env, kill_after_s=rng.uniform(*random_window_s))
        assert out.killed or out.returncode == 0, out.stderr_tail
        outcomes.append(out)
        between()
    final = run(argv, env)
    assert final.returncode == 0, final.stderr_tail
    outcomes.append(final)
    return outcomes


def read_trace(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def reference(argv: Sequence[str], env: dict[str, str], trace: Path) -> tuple[Outcome, set[str]]:
    """The uninterrupted run, and the names of the fault points it passed."""
    ref = run(argv, env, trace=trace)
    assert ref.returncode == 0, ref.stderr_tail
    return ref, set(read_trace(trace))


def planned_points(plan: Sequence[str]) -> set[str]:
    return {f.split("@")[0] for f in plan}


def comparable_metrics(rows: list[dict]) -> list[dict]:
    """Metrics rows without wall-time-dependent values."""
    skip = ("time/", "tokens_per_s", "mfu")
    return [{k: v for k, v in r.items() if not any(s in k for s in skip)} for r in rows]


def checkpoint_state(run_dir: Path, step: int) -> tuple[dict, dict]:
    """(TrainState as a dict of arrays, meta) of checkpoint `step` of a train / sft run."""
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(run_dir / "checkpoints") as mgr:
        out = mgr.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
    return out.state, dict(out.meta)
