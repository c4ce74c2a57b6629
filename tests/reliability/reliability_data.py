"""Inputs shared by the reliability tests."""

import json


def trajectory(i: int) -> dict:
    """A short terminal-style trajectory: one tool call, its output, one closing message."""
    call = {
        "id": f"c{i}",
        "type": "function",
        "function": {"name": "run_command", "arguments": json.dumps({"command": f"ls dir{i}"})},
    }
    return {
        "id": f"traj{i}",
        "messages": [
            {"role": "user", "content": f"task {i}: list the files in dir{i}"},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": f"a{i}.txt b{i}.txt"},
            {"role": "assistant", "content": f"dir{i} holds two files"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "run_command",
                    "parameters": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"],
                    },
                },
            }
        ],
    }
