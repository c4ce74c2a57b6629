"""Hand-built trajectories shared by the data tests (counts worked out by hand in docstrings)."""

import json

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SHELL_TOOL = {
    "type": "function",
    "function": {
        "name": "run",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    },
}


def call(call_id, name, **args):
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def traj_weather():
    """4 assistant turns: parallel calls (Oslo's result is an error), message, a call with text,
    message; two user queries."""
    return {
        "id": "w1",
        "domain": "weather",
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    call("a", "get_weather", city="Paris"),
                    call("b", "get_weather", city="Oslo"),
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": '{"temp": 3}'},
            {"role": "tool", "tool_call_id": "b", "content": '{"error": "timeout"}'},
            {"role": "assistant", "content": "Paris: 3 degrees. Oslo timed out."},
            {"role": "user", "content": "Try Oslo again."},
            {
                "role": "assistant",
                "content": "Retrying.",
                "tool_calls": [call("c", "get_weather", city="Oslo")],
            },
            {"role": "tool", "tool_call_id": "c", "content": '{"temp": -1}'},
            {"role": "assistant", "content": "Oslo: -1 degrees."},
        ],
    }


def traj_shell():
    """3 assistant turns: call, call whose result is an error, message; with reasoning."""
    return {
        "id": "s1",
        "domain": "shell",
        "tools": [SHELL_TOOL],
        "messages": [
            {"role": "user", "content": "How many files are in /tmp?"},
            {
                "role": "assistant",
                "reasoning_content": "List them.",
                "content": "",
                "tool_calls": [call("x", "run", cmd="ls /tmp | wc -l")],
            },
            {"role": "tool", "tool_call_id": "x", "content": "Error: permission denied"},
            {
                "role": "assistant",
                "reasoning_content": "Use sudo.",
                "tool_calls": [call("y", "run", cmd="sudo ls /tmp | wc -l")],
            },
            {"role": "tool", "tool_call_id": "y", "content": "12"},
            {"role": "assistant", "reasoning_content": "Done.", "content": "There are 12 files."},
        ],
    }


def traj_plain():
    """No domain, no tools, no id: 2 message turns."""
    return {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "2 + 2?"},
            {"role": "assistant", "content": "4"},
        ]
    }


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)
