"""OpenAI chat messages: building them, and turning a policy's completion into one.

A completion is raw text (Qwen3/Hermes `<tool_call>{...}</tool_call>` blocks, or a plain final
message, read by `pivotrl_jax.rewards.actions.parse_action`) or an assistant dict. Tool calls get
ids `call_<turn>_<k>` when they carry none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pivotrl_jax.envs.base import Completion, Message, Policy, ToolSpec
from pivotrl_jax.rewards.actions import Action, parse_action


def assistant_calls(calls: Sequence[tuple[str, dict[str, Any]]], turn: int) -> Message:
    """An assistant message with one tool call per (name, arguments); arguments keep their order."""
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": f"call_{turn}_{k}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
            }
            for k, (name, args) in enumerate(calls)
        ],
    }


def assistant_text(text: str) -> Message:
    return {"role": "assistant", "content": text}


def tool_result(call_id: str, content: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def function_spec(name: str, description: str, properties: dict, required: list[str]) -> ToolSpec:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties}
            | ({"required": required} if required else {}),
        },
    }


def to_message(completion: Completion, turn: int) -> tuple[Message, Action]:
    """The assistant message a completion stands for, and its parsed Action. An invalid action
    (malformed call) becomes a plain text message holding the raw text."""
    action = parse_action(completion)
    if action.kind == "invalid":
        raw = completion if isinstance(completion, str) else json.dumps(completion)
        return assistant_text(raw), action
    if action.kind == "message":
        return assistant_text(action.text), action
    message = assistant_calls([(c.name, c.arguments) for c in action.tool_calls], turn)
    if isinstance(completion, dict):  # keep the caller's ids
        for out, given in zip(message["tool_calls"], completion.get("tool_calls") or []):
            if isinstance(given, dict) and isinstance(given.get("id"), str):
                out["id"] = given["id"]
    message["content"] = action.text
    return message, action


def action_calls(action: Action) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, c.arguments) for c in action.tool_calls]


def history_calls(messages: Sequence[Message]) -> list[tuple[str, dict[str, Any]]]:
    """Every tool call the assistant made in `messages`, in order (arguments decoded)."""
    out = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            out.extend(action_calls(parse_action(m)))
    return out


def scripted(steps: Sequence[Message]) -> Policy:
    """A policy replaying `steps`: its k-th assistant turn returns `steps[k]`."""

    def policy(messages: list[Message], tools: list[ToolSpec]) -> Message:
        k = sum(m.get("role") == "assistant" for m in messages)
        return steps[min(k, len(steps) - 1)]

    return policy
