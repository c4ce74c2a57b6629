"""An assistant turn as an Action: tool calls and/or text, reasoning removed.

Accepted forms (`parse_action`):

- raw completion text in the Qwen3/Hermes form: `<tool_call>{"name": ..., "arguments": {...}}
  </tool_call>` blocks (several blocks = parallel calls) around optional plain text;
- an OpenAI assistant message `{"role": "assistant", "content": ..., "tool_calls": [{"type":
  "function", "function": {"name", "arguments": JSON string}}]}`;
- a public pivot-row `expected_action`: `{"type": "function_call", "name", "arguments": JSON
  string}` or `{"type": "message", "content": str | [{"type": "output_text", "text": ...}]}`;
- a list of such items (Responses-API output; several `function_call` items = parallel calls).

Trailing end-of-turn tokens (`<|im_end|>`, `<|endoftext|>`) are dropped and
`<think>...</think>` reasoning is removed before anything else, also the Qwen3 thinking form where
the opening tag was part of the prompt. A malformed call (bad JSON, missing name, arguments not an
object, an unclosed `<tool_call>`) makes the whole action invalid: `Action.error` names why, and
parsing never raises on model output.

>>> a = parse_action('<think>hm</think><tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
>>> a.kind, a.tool_calls[0].name, a.tool_calls[0].arguments
('tool_calls', 'f', {'x': 1})
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

ActionKind = Literal["message", "tool_calls", "invalid"]

_OPEN, _CLOSE = "<think>", "</think>"
_CALL_OPEN, _CALL_CLOSE = "<tool_call>", "</tool_call>"
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class ToolCall:
    """One function call; `arguments` is the decoded JSON object."""

    name: str
    arguments: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The public `function_call` form, arguments as a canonical JSON string."""
        return {
            "type": "function_call",
            "name": self.name,
            "arguments": canonical_json(self.arguments),
        }


@dataclass(frozen=True)
class Action:
    """One assistant turn. `error` is set (and nothing else matters) when the turn is invalid."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    error: str | None = None

    @property
    def kind(self) -> ActionKind:
        if self.error is not None:
            return "invalid"
        return "tool_calls" if self.tool_calls else "message"

    def to_json(self) -> Any:
        """A JSON form that `parse_action` reads back to an equal Action (invalid: its error)."""
        if self.error is not None:
            return {"type": "invalid", "error": self.error}
        if self.tool_calls:
            return [c.to_json() for c in self.tool_calls]
        return {"type": "message", "role": "assistant", "content": self.text}


def render_action(action: Action, canonical: bool = False) -> str:
    """The action as one string: its text, then one `{"name": ..., "arguments": {...}}` line per
    call as the chat template writes it (`json.dumps` spacing, keys in the order given);
    `canonical` sorts keys and drops insignificant whitespace instead."""
    dump = canonical_json if canonical else (lambda v: json.dumps(v, ensure_ascii=False))
    lines = [action.text.strip()] if action.text.strip() else []
    lines += [dump({"name": c.name, "arguments": c.arguments}) for c in action.tool_calls]
    return "\n".join(lines)


def invalid(reason: str) -> Action:
    return Action(error=reason)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def strip_reasoning(text: str) -> str:
    """Remove the leading reasoning: a text that starts with `<think>` loses everything up to the
    first `</think>` (all of it when unclosed: a completion cut off while thinking); otherwise a
    `</think>` before any `<tool_call>` ends reasoning whose opening tag was in the prompt (the
    Qwen3 thinking form). Tags later in the text (say, inside an argument) are content."""
    head = text.lstrip()
    if head.startswith(_OPEN):
        end = head.find(_CLOSE)
        return "" if end < 0 else head[end + len(_CLOSE) :]
    end = text.find(_CLOSE)
    if end >= 0:
        first_call = text.find(_CALL_OPEN)
        if first_call < 0 or end < first_call:
            return text[end + len(_CLOSE) :]
    return text


# ---------------------------------------------------------------------------------------------
# Calls


def _decode_arguments(arguments: Any) -> dict[str, Any] | str:
    """Arguments as an object, from a dict or a JSON string; a reason string when malformed."""
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return "arguments_invalid_json"
    if not isinstance(arguments, dict):
        return "arguments_not_object"
    return arguments


def make_call(name: Any, arguments: Any) -> ToolCall | str:
    """A ToolCall, or the reason the parts do not make one."""
    if not isinstance(name, str) or not name.strip():
        return "missing_name"
    decoded = _decode_arguments(arguments)
    if isinstance(decoded, str):
        return decoded
    return ToolCall(name=name.strip(), arguments=decoded)


def _call_from_object(obj: Any) -> ToolCall | str:
    if not isinstance(obj, dict):
        return "call_not_object"
    return make_call(obj.get("name"), obj.get("arguments", obj.get("parameters")))


def _split_calls(text: str) -> tuple[str, list[ToolCall | str]] | str:
    """(text outside the blocks, one call or reason per block), or the reason the blocks do not
    close. Each block body is decoded as one JSON value, so a `</tool_call>` inside an argument
    string does not end the block."""
    rest, calls, pos = [], [], 0
    while (start := text.find(_CALL_OPEN, pos)) >= 0:
        rest.append(text[pos:start])
        body = _SPACE.match(text, start + len(_CALL_OPEN)).end()
        try:
            obj, end = _DECODER.raw_decode(text, body)
            end = _SPACE.match(text, end).end()
            call = _call_from_object(obj)
        except ValueError:
            end, call = body, "call_invalid_json"
        if not text.startswith(_CALL_CLOSE, end):
            close = text.find(_CALL_CLOSE, end)
            if close < 0:
                return "unclosed_tool_call"
            end, call = close, "call_invalid_json"
        calls.append(call)
        pos = end + len(_CALL_CLOSE)
    rest.append(text[pos:])
    return "".join(rest), calls


def _collect(text: str, calls: list[ToolCall | str]) -> Action:
    for call in calls:
        if isinstance(call, str):
            return invalid(call)
    text = text.strip()
    if not calls and not text:
        return invalid("empty")
    return Action(text=text, tool_calls=tuple(calls))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Forms


def strip_end_tokens(text: str) -> str:
    """Drop trailing end-of-turn tokens (rollouts keep them: `skip_special_tokens=False`)."""
    text = text.rstrip()
    while text.endswith(_END_TOKENS):
        text = text[: text.rindex("<|")].rstrip()
    return text


def parse_completion(text: str) -> Action:
    """Raw completion text -> Action (Hermes `<tool_call>` blocks; the rest is the message)."""
    text = strip_reasoning(strip_end_tokens(text))
    split = _split_calls(text)
    if isinstance(split, str):
        return invalid(split)
    rest, calls = split
    if _CALL_CLOSE in rest:
        return invalid("unopened_tool_call")
    return _collect(rest, calls)


def _content_text(content: Any) -> str | None:
    """Message content as text: a string, or a list of text parts; None when neither."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                return None
        return "".join(parts)
    return None


def _parse_openai_message(obj: dict[str, Any]) -> Action:
    if obj.get("role", "assistant") != "assistant":
        return invalid("not_assistant")
    text = _content_text(obj.get("content"))
    if text is None:
        return invalid("content_not_text")
    raw_calls = obj.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        return invalid("tool_calls_not_list")
    if not raw_calls:
        return parse_completion(text)
    calls: list[ToolCall | str] = []
    for raw in raw_calls:
        fn = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(fn, dict):
            calls.append("call_missing_function")
        else:
            calls.append(make_call(fn.get("name"), fn.get("arguments")))
    return _collect(strip_reasoning(text), calls)


def _parse_item(obj: dict[str, Any]) -> Action:
    kind = obj.get("type")
    if kind == "function_call":
        call = make_call(obj.get("name"), obj.get("arguments"))
        return invalid(call) if isinstance(call, str) else Action(tool_calls=(call,))
    if kind == "message" or (kind is None and ("content" in obj or "tool_calls" in obj)):
        return _parse_openai_message(obj)
    if kind == "function" and isinstance(obj.get("function"), dict):
        return _parse_openai_message({"tool_calls": [obj]})
    if kind is None and "name" in obj:
        call = make_call(obj.get("name"), obj.get("arguments"))
        return invalid(call) if isinstance(call, str) else Action(tool_calls=(call,))
    if kind == "invalid":
        return invalid(str(obj.get("error") or "invalid"))
    return invalid("unknown_form")


_SKIPPED_ITEM_TYPES = frozenset({"reasoning"})


def _parse_items(items: list[Any]) -> Action:
    texts: list[str] = []
    calls: list[ToolCall | str] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") in _SKIPPED_ITEM_TYPES:
            continue
        part = parse_action(item)
        if part.error is not None and part.error != "empty":
            return part
        texts.append(part.text)
        calls.extend(part.tool_calls)
    return _collect("\n".join(t for t in texts if t), calls)


def parse_action(obj: Any) -> Action:
    """Any accepted form -> Action; never raises."""
    if isinstance(obj, Action):
        return obj
    if isinstance(obj, str):
        return parse_completion(obj)
    if isinstance(obj, dict):
        return _parse_item(obj)
    if isinstance(obj, list):
        return _parse_items(obj)
    return invalid("unknown_form")
