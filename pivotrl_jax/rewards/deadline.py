"""Time limits in the main thread: a SIGALRM timer shared by nested deadlines.

`call_with_deadline(seconds, fn, *args)` raises `VerifierTimeout` inside `fn` once the time has
passed (or an enclosing deadline's, whichever is earlier) and turns its own into
`TimeLimitExceeded`. The real-time timer interrupts pure-Python loops and
blocking socket reads alike. `VerifierTimeout` is a BaseException, so a verifier's own
`except Exception` (around a retried request, say) cannot swallow it.

Installing the handler costs a few system calls, so it happens once per `alarm_scope()`: a batch
of verifications inside one scope pays only a list push and pop each. The timer is armed lazily:
a new deadline later than the one the timer is set for needs no system call (the early alarm
re-aims itself), so back-to-back verifications with one limit re-arm about once per limit.
A call outside any scope opens one for itself. On leaving the outermost scope the previous
handler and any timer it had armed (pytest-timeout's, for instance) are put back; while the
scope is open, that timer's alarm is passed on to its handler at the time it was due.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class VerifierTimeout(BaseException):
    """Raised inside the function `call_with_deadline` runs, once a deadline has passed."""


class TimeLimitExceeded(Exception):
    """`call_with_deadline`'s own limit passed."""


class _Alarm:
    """The process's SIGALRM timer, multiplexed over nested deadlines (main thread only)."""

    def __init__(self) -> None:
        self.depth = 0
        self.deadlines: list[float] = []  # effective (nested-min) deadlines, innermost last
        self.armed_at: float | None = None  # when our timer fires
        self.prev_handler: Any = None
        self.prev_due: float | None = None  # when the displaced timer was due
        self.prev_interval = 0.0

    def _arm(self, due: float) -> None:
        self.armed_at = due
        signal.setitimer(signal.ITIMER_REAL, max(due - time.monotonic(), 1e-6))

    def _next_due(self) -> float | None:
        dues = [d for d in (self.deadlines[-1] if self.deadlines else None, self.prev_due) if d]
        return min(dues) if dues else None

    def enter(self) -> None:
        if self.depth == 0:
            self.prev_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            remaining, self.prev_interval = signal.setitimer(signal.ITIMER_REAL, 0)
            self.prev_due = time.monotonic() + remaining if remaining > 0 else None
            self.armed_at = None
            if self.prev_due is not None:
                self._arm(self.prev_due)
        self.depth += 1

    def exit(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.prev_handler or signal.SIG_DFL)
        if self.prev_due is not None:
            remaining = max(self.prev_due - time.monotonic(), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, remaining, self.prev_interval)
        self.armed_at = None

    def push(self, due: float) -> None:
        if self.deadlines:
            due = min(due, self.deadlines[-1])
        self.deadlines.append(due)
        if self.armed_at is None or due < self.armed_at:
            self._arm(due)

    def pop(self) -> None:
        self.deadlines.pop()
        if self.armed_at is None:  # the alarm was spent on the level just left
            due = self._next_due()
            if due is not None:
                self._arm(due)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        self.armed_at = None
        if self.prev_due is not None and now >= self.prev_due:
            self.prev_due = now + self.prev_interval if self.prev_interval else None
            if callable(self.prev_handler):
                self.prev_handler(signum, frame)
        if self.deadlines and now >= self.deadlines[-1]:
            raise VerifierTimeout()  # `pop` re-arms for the enclosing levels
        due = self._next_due()
        if due is not None:
            self._arm(due)


_ALARM = _Alarm()


@contextmanager
def alarm_scope() -> Iterator[None]:
    """Install the SIGALRM handler for a batch of deadlines; off the main thread, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _ALARM.enter()
    try:
        yield
    finally:
        _ALARM.exit()


def call_with_deadline(seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, raising TimeLimitExceeded once `seconds` have passed (main thread only).

    When an enclosing deadline fires first, its VerifierTimeout passes through to that level."""
    due = math.inf
    _ALARM.enter()
    try:
        due = time.monotonic() + seconds
        _ALARM.push(due)
        try:
            return fn(*args)
        finally:
            _ALARM.pop()
    except VerifierTimeout:
        if time.monotonic() < due:
            raise
        raise TimeLimitExceeded() from None
    finally:
        _ALARM.exit()
