"""Candidates <-> public pivot rows.

A pivot row (REFERENCE §2) holds the context in Responses-API form and the action to verify:

    {"responses_create_params": {"input": [...], "tools": [...], "tool_choice": "auto"},
     "expected_action": {"type": "function_call", "name": ..., "arguments": "<JSON string>"}
                      | {"type": "message", "content": ...}
                      | {"type": "function_call_batch", "calls": [<function_call>, ...]},
     "id", "trajectory_id", "turn_index", "domain", "verifier", "metadata", ...}

`input` items: `{"role": "system"|"developer"|"user"|"assistant", "content": str | parts}`,
`{"type": "reasoning", "summary": [{"type": "summary_text", "text": ...}]}`,
`{"type": "function_call", "call_id", "name", "arguments"}` and
`{"type": "function_call_output", "call_id", "output"}`. Consecutive reasoning / assistant
message / function_call items form one assistant turn (a reasoning item or a second message
starts a new one). Tools are flat Responses specs (`{"type": "function", "name", ...}`).
The expected action also carries the turn's text (`content`, on calls), `reasoning_content`
and call ids, so a candidate exported here reads back equal (token fields aside).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pivotrl_jax.data.openai_chat import Located, content_text, parse_arguments, parse_tools
from pivotrl_jax.data.schema import Candidate, Message, ToolCall


def candidate_to_row(c: Candidate) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": c.id,
        "responses_create_params": {
            "input": [item for m in c.state for item in _message_items(m)],
            "tools": [{"type": t.get("type", "function"), **t["function"]} for t in c.tools],
            "tool_choice": "auto",
        },
        "expected_action": _expected_action(c.action),
        "trajectory_id": c.trajectory_id,
        "turn_index": c.turn_index,
        "domain": c.domain,
        "verifier": c.verifier,
        "metadata": dict(c.metadata),
        "source": c.source,
    }
    if c.truncated_messages:
        row["truncated_messages"] = c.truncated_messages
    return row


def row_to_candidate(
    row: Mapping[str, Any],
    path: str,
    line: int,
    default_domain: str,
    verifier_for: Callable[[str], str],
) -> Candidate:
    """A pivot row -> Candidate; rows without provenance get it from their position."""
    at = Located(path, line)
    params = row.get("responses_create_params")
    if not isinstance(params, dict):
        raise at.error("missing or not an object", "responses_create_params", "missing_field")
    items = params.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise at.error("empty conversation", "responses_create_params.input", "empty_conversation")
    state = _items_to_messages(items, at, "responses_create_params.input")
    action = _parse_expected_action(row.get("expected_action"), at)
    tools = parse_tools(params.get("tools"), at, "responses_create_params.tools")
    domain = row.get("domain") or default_domain
    traj_id = str(row.get("trajectory_id") or row.get("id") or f"{path}:{line}")
    turn = row.get("turn_index")
    if turn is None:
        turn = sum(m.role == "assistant" for m in state)
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        raise at.error("turn_index must be a non-negative integer", "turn_index", "bad_field")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise at.error("not an object", "metadata", "bad_field")
    return Candidate(
        id=str(row.get("id") or f"{traj_id}:{turn}"),
        trajectory_id=traj_id,
        turn_index=turn,
        domain=domain,
        verifier=row.get("verifier") or verifier_for(domain),
        state=state,
        action=action,
        tools=tools,
        metadata=metadata,
        source=row.get("source") or f"{path}:{line}",
        truncated_messages=row.get("truncated_messages", 0),
    )


# --------------------------------------------------------------------------------------------
# Candidate -> row


def _call_item(call: ToolCall) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": json.dumps(call.arguments, ensure_ascii=False),
    }


def _message_items(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content}]
    if m.role != "assistant":
        return [{"role": m.role, "content": m.content}]
    items: list[dict[str, Any]] = []
    if m.reasoning_content is not None:
        summary = [{"type": "summary_text", "text": m.reasoning_content}]
        items.append({"type": "reasoning", "summary": summary})
    if m.content or not m.tool_calls:
        items.append({"role": "assistant", "content": m.content})
    items.extend(_call_item(c) for c in m.tool_calls)
    return items


def _expected_action(a: Message) -> dict[str, Any]:
    if not a.tool_calls:
        out: dict[str, Any] = {"type": "message", "content": a.content}
    elif len(a.tool_calls) == 1:
        out = _call_item(a.tool_calls[0])
    else:
        out = {"type": "function_call_batch", "calls": [_call_item(c) for c in a.tool_calls]}
    if a.tool_calls and a.content:
        out["content"] = a.content
    if a.reasoning_content is not None:
        out["reasoning_content"] = a.reasoning_content
    return out


# --------------------------------------------------------------------------------------------
# Row -> candidate


def _parse_call(item: Any, at: Located, field: str) -> ToolCall:
    if not isinstance(item, dict) or item.get("type") != "function_call":
        raise at.error("not a function_call item", field, "bad_tool_call")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise at.error("missing tool name", f"{field}.name", "bad_tool_call")
    args = parse_arguments(item.get("arguments", "{}"), at, f"{field}.arguments")
    return ToolCall(name=name, arguments=args, id=str(item.get("call_id") or item.get("id") or ""))


def _parse_expected_action(ea: Any, at: Located) -> Message:
    field = "expected_action"
    if not isinstance(ea, dict):
        raise at.error("missing or not an object", field, "missing_field")
    kind = ea.get("type")
    reasoning = ea.get("reasoning_content")
    if kind == "message":
        content = content_text(ea.get("content"), at, f"{field}.content")
        return Message(role="assistant", content=content, reasoning_content=reasoning)
    if kind == "function_call":
        calls = (_parse_call(ea, at, field),)
    elif kind == "function_call_batch":
        raw = ea.get("calls")
        if not isinstance(raw, list) or not raw:
            raise at.error(
                "function_call_batch needs a non-empty list", f"{field}.calls", "bad_tool_call"
            )
        calls = tuple(_parse_call(c, at, f"{field}.calls[{i}]") for i, c in enumerate(raw))
    else:
        known = "function_call, function_call_batch, message"
        raise at.error(
            f"unknown action type {kind!r} (known: {known})", f"{field}.type", "bad_action"
        )
    content = content_text(ea.get("content"), at, f"{field}.content")
    return Message(role="assistant", content=content, tool_calls=calls, reasoning_content=reasoning)


def _items_to_messages(items: list[Any], at: Located, field: str) -> tuple[Message, ...]:
    messages: list[Message] = []
    turn: dict[str, Any] | None = None  # the assistant turn being assembled
    open_calls: set[str] = set()

    def flush() -> None:
        nonlocal turn
        if turn is not None:
            messages.append(Message(role="assistant", **turn))
            turn = None

    for i, item in enumerate(items):
        f = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise at.error("input item is not an object", f, "bad_message")
        kind = item.get("type", "message")
        if kind == "reasoning":
            flush()
            turn = {
                "content": "",
                "tool_calls": (),
                "reasoning_content": _reasoning_text(item, at, f),
            }
        elif kind == "function_call":
            call = _parse_call(item, at, f)
            open_calls.add(call.id)
            turn = turn or {"content": "", "tool_calls": ()}
            turn["tool_calls"] += (call,)
        elif kind == "function_call_output":
            flush()
            call_id = item.get("call_id")
            if call_id not in open_calls:
                raise at.error(
                    f"call_id {call_id!r} matches no earlier unanswered call",
                    f"{f}.call_id",
                    "unmatched_tool_call_id",
                )
            open_calls.discard(call_id)
            output = item.get("output", "")
            if not isinstance(output, str):
                output = json.dumps(output, ensure_ascii=False)
            messages.append(Message(role="tool", content=output, tool_call_id=call_id))
        elif kind == "message":
            role = {"developer": "system"}.get(item.get("role"), item.get("role"))
            if role not in ("system", "user", "assistant"):
                known = "system, developer, user, assistant"
                raise at.error(
                    f"unknown role {role!r} (known: {known})", f"{f}.role", "unknown_role"
                )
            content = content_text(item.get("content"), at, f"{f}.content")
            if role == "assistant":
                if turn is None or turn["content"] or turn["tool_calls"]:
                    flush()
                    turn = {"content": "", "tool_calls": ()}
                turn["content"] = content
            else:
                flush()
                messages.append(Message(role=role, content=content))
        else:
            raise at.error(f"unknown input item type {kind!r}", f"{f}.type", "bad_message")
    flush()
    return tuple(messages)


def _reasoning_text(item: dict[str, Any], at: Located, field: str) -> str:
    parts = item.get("summary", item.get("content")) or []
    return content_text(parts, at, f"{field}.summary")
