"""Run a verifier under a time limit; errors and time-outs become reward 0 with a counted reason.

`run_verifier` never raises for anything the verifier does. In the main thread the limit is a
real-time interval timer (`SIGALRM`), which interrupts pure-Python work and blocking socket reads
alike and costs two system calls per verification; limits nest (a chain's own limit bounds its
steps'). Off the main thread the verifier runs on a helper thread that is abandoned at the limit:
the caller gets its reward 0 on time, but the abandoned work finishes in the background.

Per-verifier timing and reason counts accumulate in a `VerifierStats`.
"""

from __future__ import annotations

import concurrent.futures
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import Verifier, VerifyResult, VerifyState


class VerifierTimeout(BaseException):
    """Raised inside a running verifier when a time limit fires. A BaseException, so that a
    verifier's own `except Exception` (say, around a retried request) cannot swallow it."""


class TimeLimitExceeded(Exception):
    """`call_with_limit`'s own limit passed."""


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
# Deadlines

_deadlines: list[float] = []  # monotonic deadlines of the enclosing limits, innermost last


def _on_alarm(signum: int, frame: Any) -> None:
    raise VerifierTimeout()


def _arm(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-6))


@contextmanager
def _alarm_limit(own: float) -> Iterator[None]:
    """Main-thread limit: raise VerifierTimeout in the body at the monotonic time `own` (or an
    enclosing limit's deadline, whichever comes first)."""
    effective = min([own, *_deadlines])
    previous = signal.signal(signal.SIGALRM, _on_alarm) if not _deadlines else None
    _deadlines.append(effective)
    try:
        _arm(effective)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _deadlines.pop()
        if _deadlines:
            _arm(_deadlines[-1])
        else:
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _helper_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="verifier")
        return _pool


def call_with_limit(fn: Callable[[], VerifyResult], seconds: float | None) -> VerifyResult:
    """`fn()` bounded by `seconds` (None or inf: unbounded); raises TimeLimitExceeded past it.

    When an enclosing limit fires first, its VerifierTimeout passes through to that level."""
    if seconds is None or math.isinf(seconds):
        return fn()
    if seconds <= 0:
        raise TimeLimitExceeded()
    if threading.current_thread() is threading.main_thread():
        own = time.monotonic() + seconds
        try:
            with _alarm_limit(own):
                return fn()
        except VerifierTimeout:
            if time.monotonic() < own:  # an enclosing limit fired: it handles it
                raise
            raise TimeLimitExceeded() from None
    future = _helper_pool().submit(fn)
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
    `error:<ExceptionType>`, a time-out reward 0 with reason `timeout` (both not decisive).
    `info["timings"]` maps the verifier's name to its seconds; `stats` counts the outcome."""
    name = name or type(verifier).__name__
    start = time.perf_counter()
    try:
        res = call_with_limit(lambda: verifier.verify(state, expected, action), time_limit_s)
    except TimeLimitExceeded:
        res = VerifyResult(0.0, {"reason": "timeout", "time_limit_s": time_limit_s}, False)
    except Exception as e:  # a verifier bug or bad data must not stop profiling or training
        info = {"reason": f"error:{type(e).__name__}", "error": str(e)[:500]}
        res = VerifyResult(0.0, info, False)
    seconds = time.perf_counter() - start
    timings = dict(res.info.get("timings", {}))
    timings[name] = seconds
    res = VerifyResult(res.reward, {**res.info, "timings": timings}, res.decisive)
    if stats is not None:
        stats.record(name, res, seconds)
    return res
