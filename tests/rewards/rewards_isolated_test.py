"""`isolated`: a verifier in a killable worker process. Its results equal the same verifier's in
this process; one that swallows every exception (the in-process time limit included) in a loop,
or kills its own process, gives a counted reward 0 on time and the next call works again."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

from pivotrl_jax.rewards import (
    VerifierStats,
    VerifyState,
    build_verifier,
    parse_action,
    run_verifier,
)

STUBBORN = textwrap.dedent(
    """
    import dataclasses, os
    from pivotrl_jax.rewards.base import VERIFIERS, result

    @dataclasses.dataclass(frozen=True)
    class Stubborn:
        def verify(self, state, expected, action):
            if action.text == "hang":
                while True:
                    try:
                        while True:
                            pass
                    except BaseException:  # swallows the in-process time limit too
                        pass
            if action.text == "exit":
                os._exit(3)
            return result(float(action.text == expected.text), "compared")

    if "test_stubborn" not in VERIFIERS:
        VERIFIERS.register("test_stubborn", Stubborn)
    """
)


@pytest.fixture()
def stubborn_module(tmp_path, monkeypatch):
    (tmp_path / "stubborn_verifier.py").write_text(STUBBORN)
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned worker gets this sys.path too
    yield "stubborn_verifier"
    sys.modules.pop("stubborn_verifier", None)


def test_isolated_equals_in_process_verifier():
    state = VerifyState(
        messages=({"role": "user", "content": "Count the lines of notes.txt."},), env=None
    )
    cases = [
        ('{"name": "run", "arguments": {"cmd": "wc -l notes.txt"}}', "wc -l notes.txt"),
        ("The file has 7 lines.", "7 lines."),
        ("yes", "no"),
    ]
    inner = build_verifier("message")
    isolated = build_verifier("isolated", verifier="message", time_limit_s=30)
    try:
        for expected, action in cases:
            e, a = parse_action(expected), parse_action(action)
            want = inner.verify(state, e, a)
            got = isolated.verify(state, e, a)
            assert (got.reward, got.reason, got.decisive) == (
                want.reward,
                want.reason,
                want.decisive,
            )
    finally:
        isolated.close()


def test_a_verifier_that_swallows_the_time_limit_is_killed_and_counted(stubborn_module):
    v = build_verifier(
        "isolated", verifier="test_stubborn", time_limit_s=3.0, modules=(stubborn_module,)
    )
    stats = VerifierStats()
    state, expected = VerifyState(), parse_action("ok")
    try:
        run = lambda text: run_verifier(
            v, state, expected, parse_action(text), time_limit_s=60, stats=stats, name="s"
        )
        assert run("ok").reward == 1.0  # the worker starts (spawn) and answers
        t0 = time.perf_counter()
        hung = run("hang")
        took = time.perf_counter() - t0
        assert (hung.reward, hung.reason, hung.decisive) == (0.0, "timeout", False)
        assert 3.0 <= took < 10.0
        died = run("exit")
        assert (died.reward, died.reason) == (0.0, "error:WorkerDied")
        assert run("ok").reward == 1.0 and run("no").reward == 0.0  # a new worker answers
        assert stats.reasons == {"compared": 3, "timeout": 1, "error:WorkerDied": 1}
    finally:
        v.close()


def test_isolated_config_errors_name_the_problem(stubborn_module):
    with pytest.raises(KeyError, match="no_such_verifier"):
        build_verifier("isolated", verifier="no_such_verifier")
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        build_verifier("isolated", verifier="exact", modules=("no_such_module",))
    with pytest.raises(ValueError, match="time_limit_s"):
        build_verifier("isolated", verifier="exact", time_limit_s=0)
