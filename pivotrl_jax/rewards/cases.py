"""One verification case from a JSONL row, checked field by field with located errors.

A row is `{"tools": [OpenAI tool specs], "expected_action": {...}, "response": <an action in any
accepted form, or raw completion text>}` with optional `"messages"` (the state), `"env"` and
`"verifier"` (a name, or `{"name": ..., "params": {...}}`). Public pivot rows, which keep tools and
context under `responses_create_params` (`tools`, `input`), are read too.

The demonstrated action must be valid (it is data); the response may be any malformed model
output (it scores 0), but it must at least be text, an object or a list of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivotrl_jax.errors import InputError
from pivotrl_jax.rewards.actions import Action, parse_action
from pivotrl_jax.rewards.base import VerifyState


@dataclass(frozen=True)
class VerifyCase:
    state: VerifyState
    expected: Action
    action: Action
    verifier: str | None = None
    params: dict[str, Any] | None = None


def _list_of_objects(row: dict, key: str, path: str, line: int) -> tuple[dict[str, Any], ...]:
    value = row.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError("expected a list", path=path, line=line, field=key, reason=f"bad_{key}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InputError(
                "expected an object", path=path, line=line, field=f"{key}[{i}]", reason=f"bad_{key}"
            )
    return tuple(value)


def _verifier_spec(row: dict, path: str, line: int) -> tuple[str | None, dict | None]:
    spec = row.get("verifier")
    if spec is None or isinstance(spec, str):
        return spec, None
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise InputError(
                "expected an object",
                path=path,
                line=line,
                field="verifier.params",
                reason="bad_verifier",
            )
        return spec["name"], params
    raise InputError(
        'expected a name or {"name": ..., "params": {...}}',
        path=path,
        line=line,
        field="verifier",
        reason="bad_verifier",
    )


def parse_case(row: Any, path: str, line: int) -> VerifyCase:
    """The case in `row`; an InputError names the file, line and field that is wrong."""
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", path=path, line=line, reason="not_object")
    source = row
    if "tools" not in row and isinstance(row.get("responses_create_params"), dict):
        rcp = row["responses_create_params"]
        source = {"tools": rcp.get("tools"), "messages": rcp.get("input")}
        if isinstance(source["messages"], str):
            source["messages"] = [{"role": "user", "content": source["messages"]}]
    tools = _list_of_objects(source, "tools", path, line)
    messages = _list_of_objects(source, "messages", path, line)
    for key in ("expected_action", "response"):
        if key not in row:
            raise InputError("missing", path=path, line=line, field=key, reason=f"missing_{key}")
    expected = parse_action(row["expected_action"])
    if expected.error is not None:
        raise InputError(
            f"not a valid action ({expected.error})",
            path=path,
            line=line,
            field="expected_action",
            reason="bad_expected_action",
        )
    response = row["response"]
    action = parse_action(response)
    if not isinstance(response, str | dict | list) or action.error == "unknown_form":
        raise InputError(
            "expected completion text or an action object",
            path=path,
            line=line,
            field="response",
            reason="bad_response",
        )
    env = row.get("env")
    if env is not None and not isinstance(env, str):
        raise InputError("expected a string", path=path, line=line, field="env", reason="bad_env")
    name, params = _verifier_spec(row, path, line)
    state = VerifyState(messages=messages, tools=tools, env=env)
    return VerifyCase(state, expected, action, name, params)
