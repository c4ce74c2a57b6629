"""`pivotrl verify` end to end on real files: rewards per line, summary, malformed lines,
skip mode, parameters from flags and config, per-row verifiers, atomic output."""

import json

import pytest

from pivotrl_jax import cli

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]


def fc(name, **args):
    return {"type": "function_call", "name": name, "arguments": json.dumps(args)}


GOOD = [
    # Hermes text: a correct call -> 1
    {
        "tools": TOOLS,
        "expected_action": fc("search", query="cheap flights to Oslo"),
        "response": '<think>hm</think><tool_call>{"name": "search", "arguments": '
        '{"query": "flights Oslo cheap"}}</tool_call>',
    },
    # OpenAI form, wrong tool -> 0
    {
        "tools": TOOLS,
        "expected_action": fc("search", query="x"),
        "response": {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "book", "arguments": "{}"}}],
        },
    },
    # expected a message, got a message -> 1
    {
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "thanks"}],
        "expected_action": {"type": "message", "content": "You're welcome"},
        "response": "Glad to help!",
    },
    # malformed model output is not a malformed line: reward 0
    {
        "tools": TOOLS,
        "expected_action": fc("search", query="x"),
        "response": "<tool_call>{oops</tool_call>",
    },
]


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def verify(tmp_path, rows, *flags):
    src, dst = tmp_path / "cases.jsonl", tmp_path / "out.jsonl"
    write(src, rows)
    code = cli.main(["verify", "--input", str(src), "--output", str(dst), *flags])
    return code, dst


def test_end_to_end(tmp_path, capsys):
    code, dst = verify(tmp_path, GOOD)
    assert code == 0
    out = read(dst)
    assert [r["reward"] for r in out] == [1.0, 0.0, 1.0, 0.0]
    assert [r["info"]["reason"] for r in out] == [
        "match",
        "name_different",
        "message",
        "invalid_action:call_invalid_json",
    ]
    assert out[0]["info"]["matched"] == [[0, 0]]
    assert "tool_call" in out[0]["info"]["timings"]
    # the input is carried through unchanged
    assert {k: v for k, v in out[2].items() if k not in ("reward", "info")} == GOOD[2]
    summary = json.loads(capsys.readouterr().err)
    assert summary["count"] == 4 and summary["written"] == 4
    assert summary["mean_reward"] == 0.5
    assert summary["reasons"]["match"] == 1
    assert summary["timing"]["tool_call"]["calls"] == 4


def test_params_from_json_and_repeated_flags(tmp_path):
    # "flights Oslo cheap" vs "cheap flights to Oslo": overlap 3/7 = 0.43
    code, dst = verify(tmp_path, GOOD[:1], '--verifier_params={"threshold": 0.5}')
    assert code == 0 and read(dst)[0]["reward"] == 0.0
    code, dst = verify(
        tmp_path, GOOD[:1], '--verifier_params={"threshold": 0.5}', "--param", "threshold=0.4"
    )
    assert read(dst)[0]["reward"] == 1.0
    code, dst = verify(tmp_path, GOOD[:1], "--verifier=exact")
    assert read(dst)[0]["info"]["reason"] == "different"


def test_per_row_verifier(tmp_path):
    row = {**GOOD[0], "verifier": {"name": "similarity", "params": {"threshold": 0.1}}}
    named = {**GOOD[1], "verifier": "normalized"}
    code, dst = verify(tmp_path, [row, named])
    assert code == 0
    out = read(dst)
    assert out[0]["info"]["reason"] == "similar" and "similarity" in out[0]["info"]["timings"]
    assert out[1]["info"]["reason"] == "different"


def test_config_file(tmp_path):
    cfg = tmp_path / "verify_cfg.py"
    cfg.write_text(
        "import ml_collections\n\n"
        "def get_config(arg=None):\n"
        "    c = ml_collections.ConfigDict()\n"
        "    c.verifier = 'tool_call'\n"
        "    c.params = ml_collections.ConfigDict({'threshold': 0.5, 'mode': 'f1'})\n"
        "    c.time_limit_s = 5.0\n"
        "    return c\n"
    )
    code, dst = verify(tmp_path, GOOD[:1], f"--config={cfg}")
    assert code == 0 and read(dst)[0]["reward"] == 0.0
    code, dst = verify(tmp_path, GOOD[:1], f"--config={cfg}", "--config.params.threshold=0.2")
    assert read(dst)[0]["reward"] == 1.0


BAD = [
    ("{not json", "cases.jsonl:2: not valid JSON", "bad_json"),
    ("[1, 2]", "cases.jsonl:2: expected a JSON object", "not_object"),
    (
        {"tools": TOOLS, "response": "x"},
        "cases.jsonl:2: expected_action: missing",
        "missing_expected_action",
    ),
    (
        {"tools": TOOLS, "expected_action": fc("search")},
        "cases.jsonl:2: response: missing",
        "missing_response",
    ),
    (
        {
            "tools": TOOLS,
            "expected_action": {"type": "function_call", "name": "f", "arguments": "{bad"},
            "response": "x",
        },
        "cases.jsonl:2: expected_action: not a valid action (arguments_invalid_json)",
        "bad_expected_action",
    ),
    (
        {"tools": "search", "expected_action": fc("s"), "response": "x"},
        "cases.jsonl:2: tools: expected a list",
        "bad_tools",
    ),
    (
        {"tools": TOOLS, "expected_action": fc("s"), "response": 42},
        "cases.jsonl:2: response: expected completion text",
        "bad_response",
    ),
    (
        {"tools": TOOLS, "messages": ["hi"], "expected_action": fc("s"), "response": "x"},
        "cases.jsonl:2: messages[0]: expected an object",
        "bad_messages",
    ),
    (
        {"tools": TOOLS, "expected_action": fc("s"), "response": "x", "verifier": "nope"},
        "cases.jsonl:2: verifier: unknown verifier 'nope'",
        "bad_verifier",
    ),
]


@pytest.mark.parametrize("bad, message, reason", BAD)
def test_malformed_line_fails_with_location_and_writes_nothing(
    tmp_path, capsys, bad, message, reason
):
    code, dst = verify(tmp_path, [GOOD[0], bad, GOOD[1]])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not dst.exists()
    assert list(tmp_path.glob(".out.jsonl*")) == []


def test_skip_mode_counts_and_reports(tmp_path, capsys):
    rows = [GOOD[0], BAD[0][0], GOOD[1], BAD[2][0], BAD[2][0], "", GOOD[2]]
    code, dst = verify(tmp_path, rows, "--on_error=skip")
    assert code == 0
    assert [r["reward"] for r in read(dst)] == [1.0, 0.0, 1.0]
    summary = json.loads(capsys.readouterr().err)
    assert summary["skipped"] == 3
    assert summary["skipped_reasons"] == {"missing_expected_action": 2, "bad_json": 1}
    assert summary["first_skipped"][0].endswith(
        "cases.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes)"
    )


def test_bad_flags_are_config_errors(tmp_path, capsys):
    assert verify(tmp_path, GOOD, "--verifier=nope")[0] == 2
    assert "unknown verifier 'nope'" in capsys.readouterr().err
    assert verify(tmp_path, GOOD, "--verifier_params={bad")[0] == 2
    assert verify(tmp_path, GOOD, "--param", "novalue")[0] == 2
    assert verify(tmp_path, GOOD, "--param", "thresh=1")[0] == 2
    assert "no parameter thresh" in capsys.readouterr().err
    code = cli.main(
        [
            "verify",
            "--input",
            str(tmp_path / "missing.jsonl"),
            "--output",
            str(tmp_path / "o.jsonl"),
        ]
    )
    assert code == 2


def test_public_pivot_row_form(tmp_path):
    row = {
        "responses_create_params": {
            "input": [{"role": "user", "content": "find shoes"}],
            "tools": [
                {
                    "type": "function",
                    "name": "search",
                    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
                }
            ],
            "tool_choice": "auto",
        },
        "expected_action": fc("search", query="shoes"),
        "response": [{"type": "function_call", "name": "search", "arguments": '{"query": 5}'}],
    }
    code, dst = verify(tmp_path, [row], "--verifier=schema")
    assert code == 0
    assert read(dst)[0]["info"]["reason"] == "schema_invalid"


def test_shell_verifier_with_the_terminal_sandbox(tmp_path):
    from pivotrl_jax.envs import generate_sft

    record = next(
        r
        for r in generate_sft("terminal", 50, 0)
        if sum(bool(m.get("tool_calls")) for m in r["messages"]) > 1
    )
    msgs = record["messages"]
    i = [k for k, m in enumerate(msgs) if m.get("tool_calls")][1]
    row = lambda command: {
        "tools": record["tools"],
        "messages": msgs[:i],
        "expected_action": msgs[i],
        "response": {
            "type": "function_call",
            "name": "run_command",
            "arguments": json.dumps({"command": command}),
        },
    }
    expected_command = json.loads(msgs[i]["tool_calls"][0]["function"]["arguments"])["command"]
    code, dst = verify(
        tmp_path,
        [row(expected_command + " | cat"), row("pwd")],
        "--verifier=shell",
        "--param",
        "sandbox=terminal",
    )
    assert code == 0
    assert [(r["reward"], r["info"]["reason"]) for r in read(dst)] == [
        (1.0, "same_effect"),
        (0.0, "different_effect"),
    ]
