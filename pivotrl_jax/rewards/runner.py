"""Run a verifier under a time limit; errors and time-outs become reward 0 with a counted reason.

`run_verifier` never raises for anything the verifier does. In the main thread the limit is a
real-time timer (`deadline.call_with_deadline`, SIGALRM), which interrupts pure-Python work and
blocking socket reads alike; limits nest (a chain's own limit bounds its steps'). Wrap a loop of
verifications in `with alarm_scope():` so the signal handler is installed once for all of them
rather than once per call. Off the main thread the verifier runs on a helper thread that is
abandoned at the limit: the caller gets its reward 0 on time, but the abandoned work finishes in
the background.

Per-verifier timing and reason counts accumulate in a `VerifierStats`.
"""

from __future__ import annotations

import concurrent.futures
import math
import numbers
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import Verifier, VerifyResult, VerifyState
from pivotrl_jax.rewards.deadline import TimeLimitExceeded, alarm_scope, call_with_deadline

T = TypeVar("T")

__all__ = ["TimeLimitExceeded", "VerifierStats", "alarm_scope", "call_with_limit", "run_verifier"]


@dataclass
class VerifierStats:
    """Counters for one or more verifiers: calls, seconds and outcome reasons per verifier name."""

    calls: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    max_seconds: dict[str, float] = field(default_factory=dict)
    reasons: Counter = field(default_factory=Counter)
    reward_sum: float = 0.0

    def record(self, name: str, res: VerifyResult, seconds: float) -> None:
        self.calls[name] += 1
        self.seconds[name] += seconds
        self.max_seconds[name] = max(self.max_seconds.get(name, 0.0), seconds)
        self.reasons[res.reason] += 1
        self.reward_sum += res.reward

    def summary(self) -> dict[str, Any]:
        total = sum(self.calls.values())
        return {
            "count": total,
            "mean_reward": self.reward_sum / total if total else 0.0,
            "reasons": dict(self.reasons.most_common()),
            "timing": {
                name: {
                    "calls": n,
                    "mean_s": self.seconds[name] / n,
                    "max_s": self.max_seconds[name],
                }
                for name, n in sorted(self.calls.items())
            },
        }


# ---------------------------------------------------------------------------------------------
# Limits

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _helper_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="verifier")
        return _pool


def call_with_limit(seconds: float | None, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` bounded by `seconds` (None or inf: unbounded); raises TimeLimitExceeded past
    it. When an enclosing limit fires first, its VerifierTimeout passes through to that level."""
    if seconds is None or math.isinf(seconds):
        return fn(*args)
    if seconds <= 0:
        raise TimeLimitExceeded()
    if threading.current_thread() is threading.main_thread():
        return call_with_deadline(seconds, fn, *args)
    future = _helper_pool().submit(fn, *args)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise TimeLimitExceeded() from None


# ---------------------------------------------------------------------------------------------
# The wrapper


def run_verifier(
    verifier: Verifier,
    state: VerifyState,
    expected: Action,
    action: Action,
    *,
    time_limit_s: float | None = 10.0,
    stats: VerifierStats | None = None,
    name: str | None = None,
) -> VerifyResult:
    """`verifier.verify(...)` that never raises: an exception gives reward 0 with reason
    `error:<ExceptionType>`, a time-out reward 0 with reason `timeout`, a reward outside [0, 1]
    (NaN included, which would poison a GRPO group) reward 0 with `error:InvalidReward` (all
    not decisive).
    `info["timings"]` maps the verifier's name to its seconds; `stats` counts the outcome."""
    name = name or type(verifier).__name__
    start = time.perf_counter()
    try:
        res = call_with_limit(time_limit_s, verifier.verify, state, expected, action)
    except TimeLimitExceeded:
        res = VerifyResult(0.0, {"reason": "timeout", "time_limit_s": time_limit_s}, False)
    except Exception as e:  # a verifier bug or bad data must not stop profiling or training
        info = {"reason": f"error:{type(e).__name__}", "error": str(e)[:500]}
        res = VerifyResult(0.0, info, False)
    if not (isinstance(res.reward, numbers.Real) and 0.0 <= res.reward <= 1.0):  # NaN too
        info = {"reason": "error:InvalidReward", "error": f"reward {res.reward!r} not in [0, 1]"}
        res = VerifyResult(0.0, info, False)
    seconds = time.perf_counter() - start
    prior = res.info.get("timings")
    timings = {**prior, name: seconds} if prior else {name: seconds}
    res = VerifyResult(res.reward, {**res.info, "timings": timings}, res.decisive)
    if stats is not None:
        stats.record(name, res, seconds)
    return res
