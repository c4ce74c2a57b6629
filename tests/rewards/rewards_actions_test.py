"""Parsing completions and message dicts into Actions, checked against hand-written expectations."""

import json

import pytest

from pivotrl_jax.rewards.actions import (
    Action,
    ToolCall,
    parse_action,
    parse_completion,
    render_action,
    strip_reasoning,
)


def call(name, **args):
    return ToolCall(name, args)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello there", Action(text="Hello there")),
        ("<think>plan</think>\n\nHello", Action(text="Hello")),
        ("reasoning only in prompt</think>Answer", Action(text="Answer")),
        (
            '<tool_call>\n{"name": "get", "arguments": {"id": 3}}\n</tool_call>',
            Action(tool_calls=(call("get", id=3),)),
        ),
        (
            '<think>x</think>Let me look.\n<tool_call>{"name": "a", "arguments": {}}</tool_call>'
            '\n<tool_call>{"name": "b", "arguments": {"k": [1, 2]}}</tool_call>',
            Action(text="Let me look.", tool_calls=(call("a"), call("b", k=[1, 2]))),
        ),
        # arguments given as a JSON string (double-encoded) are decoded
        (
            '<tool_call>{"name": "f", "arguments": "{\\"q\\": \\"x y\\"}"}</tool_call>',
            Action(tool_calls=(call("f", q="x y"),)),
        ),
        # omitted arguments are an empty object
        ('<tool_call>{"name": "noop"}</tool_call>', Action(tool_calls=(call("noop"),))),
        # a tool call inside the reasoning is not an action
        (
            '<think><tool_call>{"name": "x", "arguments": {}}</tool_call></think>Done',
            Action(text="Done"),
        ),
        ("unicode ✓ 日本語", Action(text="unicode ✓ 日本語")),
        # rollouts keep the stop token (skip_special_tokens=False)
        ("Hello<|im_end|>", Action(text="Hello")),
        ("Hi<|im_end|>\n<|endoftext|>", Action(text="Hi")),
        (
            '<tool_call>{"name": "f", "arguments": {}}</tool_call><|im_end|>',
            Action(tool_calls=(call("f"),)),
        ),
        ("<|im_end|>", Action(error="empty")),
    ],
)
def test_parse_completion(text, expected):
    assert parse_completion(text) == expected


@pytest.mark.parametrize(
    "text, error",
    [
        ("<tool_call>{not json}</tool_call>", "call_invalid_json"),
        ('<tool_call>{"arguments": {}}</tool_call>', "missing_name"),
        ('<tool_call>{"name": "", "arguments": {}}</tool_call>', "missing_name"),
        ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "arguments_not_object"),
        ('<tool_call>{"name": "f", "arguments": "{bad"}</tool_call>', "arguments_invalid_json"),
        ('<tool_call>["f"]</tool_call>', "call_not_object"),
        ('<tool_call>{"name": "f", "arguments": {}}', "unclosed_tool_call"),
        ('{"name": "f"}</tool_call>', "unopened_tool_call"),
        ("", "empty"),
        ("<think>never closed", "empty"),
        # one bad call among good ones makes the whole turn invalid
        (
            '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{x}</tool_call>',
            "call_invalid_json",
        ),
    ],
)
def test_malformed_completion_is_invalid_not_an_exception(text, error):
    action = parse_completion(text)
    assert action.kind == "invalid"
    assert action.error == error


def test_openai_tool_calls_form():
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1.5}'}},
            {"id": "2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
        ],
    }
    assert parse_action(msg) == Action(tool_calls=(call("a", x=1.5), call("b")))
    bad = {
        "role": "assistant",
        "tool_calls": [{"type": "function", "function": {"name": "a", "arguments": "[]"}}],
    }
    assert parse_action(bad).error == "arguments_not_object"
    assert parse_action({"role": "user", "content": "hi"}).error == "not_assistant"


def test_public_expected_action_forms():
    fc = {"type": "function_call", "name": "search", "arguments": '{"query": "red shoes"}'}
    assert parse_action(fc) == Action(tool_calls=(call("search", query="red shoes"),))
    msg = {"type": "message", "role": "assistant", "content": "Sure."}
    assert parse_action(msg) == Action(text="Sure.")
    parts = {
        "type": "message",
        "content": [{"type": "output_text", "text": "Hi "}, {"text": "you"}],
    }
    assert parse_action(parts) == Action(text="Hi you")
    # a list of items: parallel calls; reasoning items are skipped
    items = [{"type": "reasoning", "summary": []}, fc, {**fc, "arguments": '{"query": "x"}'}]
    assert parse_action(items).tool_calls == (
        call("search", query="red shoes"),
        call("search", query="x"),
    )
    assert parse_action({"type": "mystery"}).error == "unknown_form"
    assert parse_action(42).error == "unknown_form"


def test_message_content_with_hermes_blocks_is_parsed():
    msg = {"role": "assistant", "content": '<tool_call>{"name": "f", "arguments": {}}</tool_call>'}
    assert parse_action(msg) == Action(tool_calls=(call("f"),))


def test_to_json_round_trips():
    for action in [
        Action(text="hello"),
        Action(tool_calls=(call("f", a={"b": [1, 2.5, None, True]}), call("g"))),
        Action(error="missing_name"),
    ]:
        again = parse_action(json.loads(json.dumps(action.to_json())))
        assert again == action


def test_strip_reasoning_cases():
    assert strip_reasoning("  <think>a</think>b<think>c</think>") == "b<think>c</think>"
    assert strip_reasoning("plan</think>answer") == "answer"
    assert strip_reasoning("<think>cut off") == ""
    # tags after the first call are argument content, not reasoning
    call = '<tool_call>{"name": "f", "arguments": {"x": "</think>"}}</tool_call>'
    assert strip_reasoning(call) == call
    assert strip_reasoning("see <think> here") == "see <think> here"


def test_closing_tag_inside_an_argument_string_does_not_end_the_block():
    text = '<tool_call>{"name": "f", "arguments": {"x": "a</tool_call>b"}}</tool_call>'
    assert parse_completion(text) == Action(tool_calls=(call("f", x="a</tool_call>b"),))
    trailing = '<tool_call>{"name": "f", "arguments": {}} junk</tool_call>'
    assert parse_completion(trailing).error == "call_invalid_json"


def test_render_action():
    a = Action(text=" Hi ", tool_calls=(call("f", b=1, a="é"),))
    assert render_action(a) == 'Hi\n{"name": "f", "arguments": {"b": 1, "a": "é"}}'
    assert render_action(a, canonical=True) == 'Hi\n{"arguments":{"a":"é","b":1},"name":"f"}'
