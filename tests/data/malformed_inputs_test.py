"""Malformed inputs: each gives an error naming its file, line and field."""

import json

import pytest
from data_samples import call, traj_plain, traj_weather, write_jsonl

from pivotrl_jax import cli
from pivotrl_jax.data import readers
from pivotrl_jax.errors import InputError

GOOD = json.dumps(traj_plain())


def _w(**changes):
    """The weather trajectory with messages (or other keys) changed."""
    t = traj_weather()
    t.update(changes)
    return json.dumps(t)


def _msgs(*edits):
    t = traj_weather()
    for i, m in edits:
        t["messages"][i] = m
    return json.dumps(t)


def _row(**changes):
    row = {
        "responses_create_params": {
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "function_call", "call_id": "a", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "a", "output": "3"},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}}],
        },
        "expected_action": {
            "type": "function_call",
            "name": "get_weather",
            "arguments": '{"city": "Oslo"}',
        },
    }
    row.update(changes)
    return json.dumps(row)


BAD_CALL = {"role": "assistant", "tool_calls": [call("a", "get_weather", city="Paris")]}

# (name, the bad line, field, reason); each bad line is line 2 of its file, after a good line.
CASES = [
    ("bad_json", '{"messages": [', None, "bad_json"),
    ("not_object", "[1, 2]", None, "not_object"),
    ("empty_conversation", _w(messages=[]), "messages", "empty_conversation"),
    ("no_messages", json.dumps({"id": "x", "messages": "hi"}), "messages", "missing_field"),
    (
        "unknown_role",
        _msgs((1, {"role": "robot", "content": "hi"})),
        "messages[1].role",
        "unknown_role",
    ),
    (
        "unmatched_tool_call_id",
        _msgs((3, {"role": "tool", "tool_call_id": "zzz", "content": "3"})),
        "messages[3].tool_call_id",
        "unmatched_tool_call_id",
    ),
    (
        "arguments_not_json",
        _msgs(
            (
                2,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "a", "function": {"name": "f", "arguments": "{city: Paris}"}}
                    ],
                },
            )
        ),
        "messages[2].tool_calls[0].function.arguments",
        "arguments_not_json",
    ),
    (
        "arguments_not_object",
        _msgs(
            (
                2,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1]"}}],
                },
            )
        ),
        "messages[2].tool_calls[0].function.arguments",
        "arguments_not_object",
    ),
    (
        "missing_tool_name",
        _msgs(
            (2, {"role": "assistant", "tool_calls": [{"id": "a", "function": {"arguments": "{}"}}]})
        ),
        "messages[2].tool_calls[0].function.name",
        "bad_tool_call",
    ),
    (
        "duplicate_call_id",
        _msgs((7, {"role": "assistant", "tool_calls": [call("a", "get_weather", city="Oslo")]})),
        "messages[7].tool_calls[0].id",
        "duplicate_call_id",
    ),
    (
        "content_not_text",
        _msgs((1, {"role": "user", "content": 42})),
        "messages[1].content",
        "bad_content",
    ),
    (
        "image_part",
        _msgs((1, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})),
        "messages[1].content[0]",
        "bad_content",
    ),
    (
        "no_assistant_turn",
        _w(messages=[{"role": "user", "content": "hi"}]),
        "messages",
        "no_assistant_turn",
    ),
    ("tools_not_list", _w(tools={"name": "f"}), "tools", "bad_tools"),
    (
        "tool_without_name",
        _w(tools=[{"type": "function", "function": {"parameters": {}}}]),
        "tools[0]",
        "bad_tools",
    ),
    (
        "tool_without_call_id",
        _msgs((3, {"role": "tool", "content": "3"})),
        "messages[3].tool_call_id",
        "missing_field",
    ),
    (
        "empty_assistant_turn",
        _msgs((5, {"role": "assistant", "content": ""})),
        "messages[5]",
        "empty_action",
    ),
    ("bad_id", _w(id=["w1"]), "id", "bad_id"),
    ("duplicate_id", json.dumps(traj_plain()), "id", "duplicate_id"),
    ("unknown_format", json.dumps({"prompt": "hi"}), None, "unknown_format"),
    (
        "row_arguments_not_json",
        _row(expected_action={"type": "function_call", "name": "f", "arguments": "{oops"}),
        "expected_action.arguments",
        "arguments_not_json",
    ),
    (
        "row_unknown_action",
        _row(expected_action={"type": "shout"}),
        "expected_action.type",
        "bad_action",
    ),
    (
        "row_unmatched_call_id",
        _row(
            responses_create_params={
                "input": [
                    {"role": "user", "content": "x"},
                    {"type": "function_call_output", "call_id": "q", "output": ""},
                ]
            }
        ),
        "responses_create_params.input[1].call_id",
        "unmatched_tool_call_id",
    ),
    (
        "row_empty_input",
        _row(responses_create_params={"input": []}),
        "responses_create_params.input",
        "empty_conversation",
    ),
    (
        "row_empty_batch",
        _row(expected_action={"type": "function_call_batch", "calls": []}),
        "expected_action.calls",
        "bad_tool_call",
    ),
]


@pytest.mark.parametrize(("name", "line", "field", "reason"), CASES, ids=[c[0] for c in CASES])
def test_located_error(tmp_path, name, line, field, reason):
    path = write_jsonl(tmp_path / f"{name}.jsonl", [GOOD, line])
    with pytest.raises(InputError) as e:
        list(readers.read_inputs([path]))
    assert (e.value.path, e.value.line, e.value.field, e.value.reason) == (path, 2, field, reason)
    assert str(e.value).startswith(f"{path}:2: " + (f"{field}: " if field else ""))


def test_non_utf8_and_long_lines(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(
        GOOD.encode() + b"\n" + b'{"id": "caf\xe9"}\n' + b"x" * 5000 + b"\n" + _w().encode() + b"\n"
    )
    with pytest.raises(InputError) as e:
        list(readers.read_inputs([path]))
    assert (e.value.line, e.value.reason) == (2, "not_utf8")
    # b'{"id": "caf' is 11 bytes, so the bad byte is at offset 11.
    assert "not UTF-8 at byte offset 11" in str(e.value)
    report = readers.ReadReport()
    items = list(readers.read_inputs([path], on_error="skip", max_line_bytes=4000, report=report))
    assert [t.id for t in items] == [items[0].id, "w1"]
    assert report.skipped == {"not_utf8": 1, "line_too_long": 1}
    assert report.rows == 4
    assert any(f"{path}:3: line is 5001 bytes" in x for x in report.examples)


def test_skip_counts_every_reason(tmp_path):
    path = write_jsonl(tmp_path / "all.jsonl", [GOOD] + [c[1] for c in CASES] + [_w(id="last")])
    report = readers.ReadReport()
    items = list(readers.read_inputs([path], on_error="skip", report=report))
    assert [getattr(t, "id", None) for t in items][-1] == "last"
    assert len(items) == 2  # the first good row and the last
    want = {}
    for c in CASES:
        want[c[3]] = want.get(c[3], 0) + 1
    assert dict(report.skipped) == want
    assert report.rows == len(CASES) + 2


def test_cli_fail_writes_nothing_and_skip_writes_good_rows(tmp_path, capsys):
    bad = _msgs((1, {"role": "robot", "content": "hi"}))
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD, bad, _w(id="w2")])
    out = tmp_path / "out"
    assert cli.main(["extract", "--input", path, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: messages[1].role: unknown role 'robot'" in err
    assert not out.exists()
    assert cli.main(["extract", "--input", path, "--output", str(out), "--format=pivot-rows"]) == 2
    assert not out.exists()
    assert cli.main(["extract", "--input", path, "--output", str(out), "--on_error=skip"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped_rows"] == {"unknown_role": 1}
    assert manifest["candidates"] == 2 + 4
    assert "skipped rows: unknown_role=1" in capsys.readouterr().out
