"""`run_verifier`: time limits (main thread, nested, helper thread), errors, timing and counts."""

import contextlib
import signal
import threading
import time
from dataclasses import dataclass

from pivotrl_jax.rewards import (
    VERIFIERS,
    VerifierStats,
    VerifyResult,
    VerifyState,
    alarm_scope,
    build_verifier,
    parse_action,
    run_verifier,
)

S = VerifyState()
A = parse_action("hello")


@dataclass(frozen=True)
class Sleeper:
    seconds: float = 5.0

    def verify(self, state, expected, action):
        time.sleep(self.seconds)
        return VerifyResult(1.0, {"reason": "slept"})


@dataclass(frozen=True)
class Spinner:
    """Busy loop that also swallows ordinary exceptions, as a retry loop might."""

    def verify(self, state, expected, action):
        while True:
            with contextlib.suppress(Exception):
                sum(range(1000))


@dataclass(frozen=True)
class Raiser:
    def verify(self, state, expected, action):
        return 1 / 0


class AlarmSnapshot:
    """The SIGALRM handler and timer as found (pytest-timeout may have armed one)."""

    def __init__(self):
        self.handler = signal.getsignal(signal.SIGALRM)
        self.remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        self.at = time.monotonic()

    def assert_restored(self):
        assert signal.getsignal(signal.SIGALRM) == self.handler
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        if self.remaining == 0:
            assert remaining == 0
        else:  # still armed, for what was left of it
            left = self.remaining - (time.monotonic() - self.at)
            assert left - 0.5 < remaining <= self.remaining


for _name, _cls in [("test-sleep", Sleeper), ("test-spin", Spinner), ("test-raise", Raiser)]:
    if _name not in VERIFIERS:
        VERIFIERS.register(_name, _cls)


def test_timeout_interrupts_sleep_and_busy_loops():
    snapshot = AlarmSnapshot()
    for verifier in (Sleeper(), Spinner()):
        start = time.monotonic()
        got = run_verifier(verifier, S, A, A, time_limit_s=0.2, name="v")
        elapsed = time.monotonic() - start
        assert (got.reward, got.reason, got.decisive) == (0.0, "timeout", False)
        assert 0.19 < elapsed < 1.5
        assert got.info["timings"]["v"] >= 0.19
    snapshot.assert_restored()


def test_fast_verifier_is_untouched_and_timed():
    got = run_verifier(Sleeper(0.01), S, A, A, time_limit_s=2.0, name="sleep")
    assert (got.reward, got.reason) == (1.0, "slept")
    assert 0.009 < got.info["timings"]["sleep"] < 1.0
    got = run_verifier(Sleeper(0.01), S, A, A, time_limit_s=None)
    assert got.reward == 1.0


def test_exception_becomes_a_counted_reason():
    stats = VerifierStats()
    got = run_verifier(Raiser(), S, A, A, stats=stats, name="r")
    assert (got.reward, got.reason, got.decisive) == (0.0, "error:ZeroDivisionError", False)
    assert "division by zero" in got.info["error"]
    run_verifier(Sleeper(0.0), S, A, A, stats=stats, name="s")
    summary = stats.summary()
    assert summary["count"] == 2
    assert summary["mean_reward"] == 0.5
    assert summary["reasons"] == {"error:ZeroDivisionError": 1, "slept": 1}
    assert set(summary["timing"]) == {"r", "s"}
    assert summary["timing"]["r"]["calls"] == 1


def test_nested_limits_inner_fires_first():
    snapshot = AlarmSnapshot()
    # the chain's step has 0.1 s, the chain 5 s: the step times out, the chain goes on
    chain = build_verifier(
        "chain",
        steps=(
            {"verifier": "test-sleep", "time_limit_s": 0.1},
            {"verifier": "exact"},
        ),
    )
    start = time.monotonic()
    got = run_verifier(chain, S, A, A, time_limit_s=5.0, name="chain")
    assert time.monotonic() - start < 2.0
    assert (got.reward, got.reason) == (1.0, "1:exact:match")
    assert got.info["steps"][0]["reason"] == "timeout"
    snapshot.assert_restored()


def test_nested_limits_outer_fires_first():
    snapshot = AlarmSnapshot()
    # the step would allow 5 s but the whole chain only 0.2 s: the chain times out
    chain = build_verifier("chain", steps=({"verifier": "test-sleep", "time_limit_s": 5.0},))
    start = time.monotonic()
    got = run_verifier(chain, S, A, A, time_limit_s=0.2, name="chain")
    assert time.monotonic() - start < 1.5
    assert got.reason == "timeout"
    snapshot.assert_restored()


def test_limit_off_the_main_thread():
    out = {}

    def work():
        start = time.monotonic()
        out["res"] = run_verifier(Sleeper(3.0), S, A, A, time_limit_s=0.2)
        out["elapsed"] = time.monotonic() - start
        out["ok"] = run_verifier(Sleeper(0.0), S, A, A, time_limit_s=1.0)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert out["res"].reason == "timeout"
    assert out["elapsed"] < 1.5
    assert out["ok"].reward == 1.0


def test_batch_scope_keeps_limits_working():
    snapshot = AlarmSnapshot()
    with alarm_scope():
        for _ in range(200):
            assert run_verifier(Sleeper(0.0), S, A, A, time_limit_s=0.05).reward == 1.0
        start = time.monotonic()
        assert run_verifier(Spinner(), S, A, A, time_limit_s=0.2).reason == "timeout"
        assert time.monotonic() - start < 1.5
        assert run_verifier(Sleeper(0.01), S, A, A, time_limit_s=1.0).reward == 1.0
    snapshot.assert_restored()


def test_a_timer_armed_before_is_passed_on_and_restored():
    fired = []
    old_timer = signal.setitimer(signal.ITIMER_REAL, 0)
    old = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(time.monotonic()))
    try:
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        got = run_verifier(Sleeper(0.6), S, A, A, time_limit_s=5.0)
        assert got.reward == 1.0  # the other timer's alarm is not our time-out
        assert len(fired) == 1 and 0.25 < fired[0] - start < 0.55
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        run_verifier(Sleeper(0.0), S, A, A, time_limit_s=5.0)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 1.5 < remaining <= 2.0  # re-armed for what was left of it
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if old_timer[0]:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)
