"""The `shell` verifier on the project's simulated terminal ("terminal" sandbox from
`pivotrl_jax.envs`): a generated trajectory's turn, candidates judged by argv or by effect."""

import pytest

from pivotrl_jax.envs import generate_sft
from pivotrl_jax.rewards import VerifyState, build_verifier, parse_action


@pytest.fixture(scope="module")
def turn():
    """The first expert turn that counts a file's lines as `cat PATH | wc -l` (PATH plain)."""
    for record in generate_sft("terminal", 300, 0):
        messages = record["messages"]
        for i, m in enumerate(messages):
            if m["role"] != "assistant" or not m.get("tool_calls"):
                continue
            command = parse_action(m).tool_calls[0].arguments["command"]
            words = command.split()
            if words[0] == "cat" and words[2:] == ["|", "wc", "-l"] and words[1][0].isalpha():
                state = VerifyState(
                    messages=tuple(messages[:i]), tools=tuple(record["tools"]), env="terminal"
                )
                return state, parse_action(m), words[1]
    raise AssertionError("no `cat PATH | wc -l` turn")


def candidate(command):
    return parse_action(
        {"type": "function_call", "name": "run_command", "arguments": {"command": command}}
    )


@pytest.mark.parametrize(
    "command, reward, reason",
    [
        ("cat ./{p}|wc -l", 1.0, "same_command"),
        ("wc -l < {p}", 1.0, "same_effect"),
        ("cat {p} | wc -l | cat", 1.0, "same_effect"),
        ("wc -l {p}", 0.0, "different_effect"),  # prints the file name too
        ("ls {d}", 0.0, "different_effect"),
        ("touch x && cat {p} | wc -l", 0.0, "different_effect"),  # same output
    ],
)
def test_terminal_sandbox(turn, command, reward, reason):
    state, expected, p = turn
    command = command.format(p=p, d=p.rsplit("/", 1)[0])
    got = build_verifier("shell", sandbox="terminal").verify(state, expected, candidate(command))
    assert (got.reward, got.reason) == (reward, reason)


def test_without_sandbox_only_argv_counts(turn):
    state, expected, p = turn
    v = build_verifier("shell")
    assert v.verify(state, expected, candidate(f"cat ./{p}|wc -l")).reward == 1.0
    assert v.verify(state, expected, candidate(f"wc -l < {p}")).reason == ("different_command")
