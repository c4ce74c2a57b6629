"""`chain`: the first decisive step wins; decide_on rules; undecided falls to 0."""

from dataclasses import dataclass

import pytest

from pivotrl_jax.rewards import VERIFIERS, VerifyResult, VerifyState, build_verifier, parse_action

S = VerifyState()


@dataclass(frozen=True)
class Fixed:
    reward: float = 1.0
    decisive: bool = True

    def verify(self, state, expected, action):
        return VerifyResult(self.reward, {"reason": f"fixed{self.reward}"}, self.decisive)


if "test-fixed" not in VERIFIERS:
    VERIFIERS.register("test-fixed", Fixed)


def chain(*steps, **params):
    return build_verifier("chain", steps=steps, **params)


def step(reward, decide_on="any", decisive=True):
    return {
        "verifier": "test-fixed",
        "params": {"reward": reward, "decisive": decisive},
        "decide_on": decide_on,
    }


A = parse_action("x")


@pytest.mark.parametrize(
    "steps, reward, reason, n_run",
    [
        ((step(1.0), step(0.0)), 1.0, "0:test-fixed:fixed1.0", 1),
        ((step(0.0), step(1.0)), 0.0, "0:test-fixed:fixed0.0", 1),
        ((step(1.0, "fail"), step(0.0)), 0.0, "1:test-fixed:fixed0.0", 2),  # a pass goes on
        ((step(0.0, "fail"), step(1.0)), 0.0, "0:test-fixed:fixed0.0", 1),
        ((step(0.0, "pass"), step(1.0)), 1.0, "1:test-fixed:fixed1.0", 2),
        ((step(1.0, decisive=False), step(0.0)), 0.0, "1:test-fixed:fixed0.0", 2),
        ((step(0.0, "pass"), step(1.0, decisive=False)), 0.0, "undecided", 2),
    ],
)
def test_first_decisive_step_wins(steps, reward, reason, n_run):
    got = chain(*steps).verify(S, A, A)
    assert (got.reward, got.reason) == (reward, reason)
    assert len(got.info["steps"]) == n_run


def test_pass_at_threshold():
    got = chain(step(0.5, "pass"), step(0.0), pass_at=0.5).verify(S, A, A)
    assert got.reward == 0.5


def test_terminal_chain_schema_similarity_without_judge():
    tools = (
        {
            "type": "function",
            "function": {
                "name": "sh",
                "parameters": {"type": "object", "properties": {"keystrokes": {"type": "string"}}},
            },
        },
    )
    st = VerifyState(tools=tools)
    steps = (
        {"verifier": "schema", "decide_on": "fail"},
        {
            "verifier": "similarity",
            "params": {"threshold": 0.95, "argument": "keystrokes"},
            "decide_on": "pass",
        },
        {"verifier": "exact"},
    )
    v = build_verifier("chain", steps=steps)
    call = lambda k: parse_action(
        {"type": "function_call", "name": "sh", "arguments": {"keystrokes": k}}
    )
    exp = call("cd /workspace/project && ls -la\n")
    assert v.verify(st, exp, call("cd /workspace/project && ls -la")).reason == (
        "1:similarity:similar"
    )
    assert v.verify(st, exp, call("rm -rf /")).reason == "2:exact:different"
    bad = parse_action({"type": "function_call", "name": "sh", "arguments": {"keystrokes": 1}})
    assert v.verify(st, exp, bad).reason == "0:schema:schema_invalid"


def test_bad_step_specs_are_named():
    with pytest.raises(ValueError, match="chain step 0"):
        build_verifier("chain", steps=({"name": "exact"},))
    with pytest.raises(KeyError, match="any, fail, pass"):
        build_verifier("chain", steps=({"verifier": "exact", "decide_on": "maybe"},))
    with pytest.raises(ValueError, match="at least one step"):
        build_verifier("chain", steps=())
