"""The `shell` verifier on the project's simulated terminal ("terminal" sandbox from
`pivotrl_jax.envs`): a generated trajectory's turn, candidates judged by argv or by effect."""

import pytest

from pivotrl_jax.envs import generate_sft
from pivotrl_jax.rewards import VerifyState, build_verifier, parse_action


@pytest.fixture(scope="module")
def turn():
    record = generate_sft("terminal", 1, 0)[0]
    messages = record["messages"]
    i = next(
        k
        for k, m in enumerate(messages)
        if m["role"] == "assistant"
        and m.get("tool_calls")
        and "wc -l" in m["tool_calls"][0]["function"]["arguments"]
    )
    state = VerifyState(messages=tuple(messages[:i]), tools=tuple(record["tools"]), env="terminal")
    return state, parse_action(messages[i])


def candidate(command):
    return parse_action(
        {"type": "function_call", "name": "run_command", "arguments": {"command": command}}
    )


@pytest.mark.parametrize(
    "command, reward, reason",
    [
        ("cat ./tables/users.csv|wc -l", 1.0, "same_command"),
        ("wc -l < tables/users.csv", 1.0, "same_effect"),
        ("cat tables/users.csv | wc -l | cat", 1.0, "same_effect"),
        ("wc -l tables/users.csv", 0.0, "different_effect"),  # prints the file name too
        ("ls tables", 0.0, "different_effect"),
        ("touch x && cat tables/users.csv | wc -l", 0.0, "different_effect"),  # same output
    ],
)
def test_terminal_sandbox(turn, command, reward, reason):
    state, expected = turn
    assert expected.tool_calls[0].arguments == {"command": "cat tables/users.csv | wc -l"}
    got = build_verifier("shell", sandbox="terminal").verify(state, expected, candidate(command))
    assert (got.reward, got.reason) == (reward, reason)


def test_without_sandbox_only_argv_counts(turn):
    state, expected = turn
    v = build_verifier("shell")
    assert v.verify(state, expected, candidate("cat ./tables/users.csv|wc -l")).reward == 1.0
    assert v.verify(state, expected, candidate("wc -l < tables/users.csv")).reason == (
        "different_command"
    )
