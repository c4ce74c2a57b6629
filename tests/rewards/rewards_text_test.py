"""`exact`, `normalized`, `similarity` and `schema` on hand-worked cases."""

import difflib

import pytest

from pivotrl_jax.rewards import VerifyState, build_verifier, parse_action

S = VerifyState()


def run(name, expected, response, state=S, **params):
    return build_verifier(name, **params).verify(
        state, parse_action(expected), parse_action(response)
    )


FC = {"type": "function_call", "name": "f", "arguments": '{"b": 1, "a": "x  y"}'}


@pytest.mark.parametrize(
    "expected, response, exact, normalized",
    [
        ("Hello world", "  Hello world\n", 1.0, 1.0),
        ("Hello world", "Hello  world", 0.0, 1.0),
        ("Hello world", "hello world", 0.0, 0.0),
        ("Hi", "<think>hm</think>Hi", 1.0, 1.0),
        # the chat template's rendering: key order and spacing as json.dumps writes them
        (FC, '<tool_call>{"name": "f", "arguments": {"b": 1, "a": "x  y"}}</tool_call>', 1.0, 1.0),
        (FC, '<tool_call>{"name": "f", "arguments": {"a": "x  y", "b": 1}}</tool_call>', 0.0, 1.0),
        (FC, '<tool_call>{"name":"f","arguments":{"b":1,"a":"x  y"}}</tool_call>', 1.0, 1.0),
        (
            FC,
            '<tool_call>{"name": "f", "arguments": {"b": 1.0, "a": "x  y"}}</tool_call>',
            0.0,
            0.0,
        ),
        (FC, '<tool_call>{"name": "f", "arguments": {"b": 1, "a": "x y"}}</tool_call>', 0.0, 1.0),
        (FC, "a message", 0.0, 0.0),
        (FC, "<tool_call>{</tool_call>", 0.0, 0.0),
    ],
)
def test_exact_and_normalized(expected, response, exact, normalized):
    assert run("exact", expected, response).reward == exact
    assert run("normalized", expected, response).reward == normalized


@pytest.mark.parametrize(
    "e, a, threshold",
    [
        ("ls -la /tmp", "ls -la /tmp/", 0.95),
        ("cd /home/user && make", "cd /home/user && make test", 0.8),
        ("grep -r foo .", "rg foo", 0.5),
        ("", "x", 0.5),
    ],
)
def test_similarity_matches_difflib_ratio(e, a, threshold):
    want = difflib.SequenceMatcher(None, e, a, autojunk=False).ratio()
    exp = {"type": "function_call", "name": "sh", "arguments": {"keystrokes": e}}
    got = run(
        "similarity",
        exp,
        {"type": "function_call", "name": "sh", "arguments": {"keystrokes": a}},
        threshold=threshold,
        argument="keystrokes",
    )
    assert got.info["ratio"] == pytest.approx(want, abs=1e-6)
    assert got.reward == float(want >= threshold)


def test_similarity_hand_worked_ratio():
    # "abcd" vs "abxd": matching blocks "ab" and "d", M = 3, ratio = 2*3/8 = 0.75
    got = run("similarity", "abcd", "abxd", threshold=0.75)
    assert (got.reward, got.info["ratio"]) == (1.0, 0.75)
    assert run("similarity", "abcd", "abxd", threshold=0.76).reward == 0.0


def test_similarity_argument_mode_needs_same_tool_and_the_argument():
    exp = {"type": "function_call", "name": "sh", "arguments": {"keystrokes": "ls"}}
    other = {"type": "function_call", "name": "py", "arguments": {"keystrokes": "ls"}}
    missing = {"type": "function_call", "name": "sh", "arguments": {"cmd": "ls"}}
    assert run("similarity", exp, other, argument="keystrokes").reason == "name_different"
    assert run("similarity", exp, missing, argument="keystrokes").reason == "argument_missing"


TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "sh",
            "parameters": {
                "type": "object",
                "properties": {"keystrokes": {"type": "string"}},
                "required": ["keystrokes"],
            },
        },
    },
)


@pytest.mark.parametrize(
    "expected, response, reward, reason",
    [
        ("hi", "anything", 1.0, "well_formed"),
        (
            "hi",
            '<tool_call>{"name": "sh", "arguments": {"keystrokes": "ls"}}</tool_call>',
            0.0,
            "kind_different",
        ),
        (
            {"type": "function_call", "name": "sh", "arguments": '{"keystrokes": "pwd"}'},
            '<tool_call>{"name": "sh", "arguments": {"keystrokes": "ls"}}</tool_call>',
            1.0,
            "well_formed",
        ),
        (
            {"type": "function_call", "name": "sh", "arguments": '{"keystrokes": "pwd"}'},
            '<tool_call>{"name": "sh", "arguments": {"keystrokes": 3}}</tool_call>',
            0.0,
            "schema_invalid",
        ),
        (
            {"type": "function_call", "name": "sh", "arguments": '{"keystrokes": "pwd"}'},
            '<tool_call>{"name": "bash", "arguments": {}}</tool_call>',
            0.0,
            "unknown_tool",
        ),
        ("hi", "<tool_call>nope</tool_call>", 0.0, "invalid_action:call_invalid_json"),
    ],
)
def test_schema_verifier(expected, response, reward, reason):
    got = run("schema", expected, response, VerifyState(tools=TOOLS))
    assert (got.reward, got.reason) == (reward, reason)


def test_similarity_autojunk_option_follows_difflib():
    e = "x" * 150 + " ".join(f"w{i}" for i in range(40))
    a = e.replace("w7", "w8")
    for autojunk in (False, True):
        want = difflib.SequenceMatcher(None, e, a, autojunk=autojunk).ratio()
        got = run("similarity", e, a, threshold=0.0, autojunk=autojunk)
        assert got.info["ratio"] == pytest.approx(want, abs=1e-6)
    # one changed character: 0.997 without the heuristic, 0.605 with it (it junks "x", "w", " ")
    assert run("similarity", e, a, autojunk=False).reward == 1.0
    assert run("similarity", e, a, autojunk=True).reward == 0.0
