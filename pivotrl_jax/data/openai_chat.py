"""One OpenAI chat row -> a validated `Trajectory`.

Row layout: `messages` (roles system, user, assistant, tool), `tools` (OpenAI function specs,
`{"type": "function", "function": {...}}`; the flat Responses spelling is accepted too),
optional `id`, `domain`, `metadata`. Assistant messages may carry `tool_calls` (arguments as a
JSON string or object) and `reasoning_content`; tool messages answer a call by `tool_call_id`.

Every problem raises `InputError` naming the file, line and field, with a `reason` used to
count skipped rows. A row without `id` gets a stable one from a hash of its content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pivotrl_jax.data.schema import ROLES, Message, ToolCall, Trajectory
from pivotrl_jax.errors import InputError


class Located:
    """Raises `InputError`s located at one row of one file."""

    def __init__(self, path: str, line: int):
        self.path, self.line = path, line

    def error(self, message: str, field: str | None, reason: str) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field, reason=reason)


def parse_trajectory(row: Mapping[str, Any], path: str, line: int) -> Trajectory:
    at = Located(path, line)
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise at.error("missing or not a list", "messages", "missing_field")
    if not messages:
        raise at.error("empty conversation", "messages", "empty_conversation")
    tools = parse_tools(row.get("tools"), at, "tools")
    parsed: list[Message] = []
    open_calls: set[str] = set()
    seen_calls: set[str] = set()
    for i, m in enumerate(messages):
        msg = _parse_message(m, at, f"messages[{i}]", i)
        for j, call in enumerate(msg.tool_calls):
            if call.id in seen_calls:
                field = f"messages[{i}].tool_calls[{j}].id"
                raise at.error(f"duplicate tool call id {call.id!r}", field, "duplicate_call_id")
            seen_calls.add(call.id)
            open_calls.add(call.id)
        if msg.role == "tool":
            if msg.tool_call_id not in open_calls:
                raise at.error(
                    f"tool_call_id {msg.tool_call_id!r} matches no earlier unanswered call",
                    f"messages[{i}].tool_call_id",
                    "unmatched_tool_call_id",
                )
            open_calls.discard(msg.tool_call_id)
        parsed.append(msg)
    if not any(m.role == "assistant" for m in parsed):
        raise at.error("conversation has no assistant turn", "messages", "no_assistant_turn")
    return Trajectory(
        id=_trajectory_id(row, at),
        messages=tuple(parsed),
        tools=tools,
        domain=_opt_str(row, "domain", at),
        metadata=_opt_dict(row, "metadata", at),
        source=f"{path}:{line}",
    )


def _parse_message(m: Any, at: Located, field: str, index: int) -> Message:
    if not isinstance(m, dict):
        raise at.error("message is not an object", field, "bad_message")
    role = m.get("role")
    if role == "developer":
        role = "system"
    if role not in ROLES:
        raise at.error(
            f"unknown role {role!r} (known: {', '.join(ROLES)})", f"{field}.role", "unknown_role"
        )
    content = content_text(m.get("content"), at, f"{field}.content")
    if role != "assistant":
        for key in ("tool_calls", "reasoning_content"):
            if m.get(key):
                raise at.error(
                    f"only assistant messages have {key}", f"{field}.{key}", "bad_message"
                )
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise at.error(
                "tool message without tool_call_id", f"{field}.tool_call_id", "missing_field"
            )
        return Message(role=role, content=content, tool_call_id=call_id)
    if role != "assistant":
        return Message(role=role, content=content)
    raw_calls = m.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise at.error("tool_calls is not a list", f"{field}.tool_calls", "bad_tool_call")
    calls = tuple(
        parse_tool_call(c, at, f"{field}.tool_calls[{j}]", default_id=f"call_{index}_{j}")
        for j, c in enumerate(raw_calls)
    )
    reasoning = m.get("reasoning_content", m.get("reasoning"))
    if reasoning is not None and not isinstance(reasoning, str):
        raise at.error("reasoning is not a string", f"{field}.reasoning_content", "bad_content")
    if not content and not calls and not reasoning:
        raise at.error("assistant turn has no content and no tool calls", field, "empty_action")
    return Message(role=role, content=content, tool_calls=calls, reasoning_content=reasoning)


def parse_tool_call(c: Any, at: Located, field: str, default_id: str = "") -> ToolCall:
    if not isinstance(c, dict):
        raise at.error("tool call is not an object", field, "bad_tool_call")
    fn = c.get("function")
    if not isinstance(fn, dict):
        raise at.error("missing or not an object", f"{field}.function", "bad_tool_call")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise at.error("missing tool name", f"{field}.function.name", "bad_tool_call")
    call_id = c.get("id") or default_id
    if not isinstance(call_id, str):
        raise at.error("tool call id is not a string", f"{field}.id", "bad_tool_call")
    args = parse_arguments(fn.get("arguments", "{}"), at, f"{field}.function.arguments")
    return ToolCall(name=name, arguments=args, id=call_id)


def parse_arguments(raw: Any, at: Located, field: str) -> dict[str, Any]:
    """Arguments as a JSON object, from a JSON string or an object."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            raise at.error(
                f"arguments are not JSON: {e.msg}", field, "arguments_not_json"
            ) from None
    if not isinstance(raw, dict):
        raise at.error(
            f"arguments are a {type(raw).__name__}, not an object", field, "arguments_not_object"
        )
    return raw


def content_text(content: Any, at: Located, field: str) -> str:
    """A string, null (empty) or a list of text parts (`{"type": "text", "text": ...}`)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            if not (isinstance(part, dict) and isinstance(part.get("text"), str)):
                raise at.error("only text parts are supported", f"{field}[{k}]", "bad_content")
            parts.append(part["text"])
        return "".join(parts)
    raise at.error(f"content is a {type(content).__name__}", field, "bad_content")


def parse_tools(raw: Any, at: Located, field: str) -> tuple[dict[str, Any], ...]:
    """OpenAI function specs, nested (`{"type", "function": {...}}`) or flat (Responses API)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise at.error("tools is not a list", field, "bad_tools")
    tools = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise at.error("tool is not an object", f"{field}[{i}]", "bad_tools")
        spec = t["function"] if "function" in t else {k: v for k, v in t.items() if k != "type"}
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise at.error("tool spec without a name", f"{field}[{i}]", "bad_tools")
        tools.append({"type": t.get("type", "function"), "function": spec})
    return tuple(tools)


def _trajectory_id(row: Mapping[str, Any], at: Located) -> str:
    raw = row.get("id")
    if raw is None:
        digest = hashlib.sha1(json.dumps(row, sort_keys=True).encode("utf-8")).hexdigest()
        return f"t{digest[:16]}"
    if (
        isinstance(raw, bool)
        or not isinstance(raw, str | int)
        or (isinstance(raw, str) and not raw)
    ):
        raise at.error("id must be a non-empty string or an integer", "id", "bad_id")
    return str(raw)


def _opt_str(row: Mapping[str, Any], key: str, at: Located) -> str | None:
    v = row.get(key)
    if v is not None and not isinstance(v, str):
        raise at.error("not a string", key, "bad_field")
    return v


def _opt_dict(row: Mapping[str, Any], key: str, at: Located) -> dict[str, Any]:
    v = row.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise at.error("not an object", key, "bad_field")
    return v
