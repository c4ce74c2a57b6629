"""`turn_kind`: one verifier per kind of expected action (a message, or tool calls).

A message turn and a tool-call turn ask different questions (does the reply state the answer?
does the call do the same thing?), so a domain routes each to its own verifier:

    build_verifier("turn_kind",
                   message={"name": "message"},
                   tool_calls={"name": "tool_call", "params": {"threshold": 0.1}})

A candidate of the other kind than the expected action scores 0 (reason `wrong_kind`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, build_verifier, result

KINDS = ("message", "tool_calls")


def _build(spec: dict[str, Any], kind: str):
    if not isinstance(spec, dict) or "name" not in spec or set(spec) - {"name", "params"}:
        raise ValueError(f"turn_kind {kind}: expected {{'name', 'params'}}, got {spec!r}")
    return build_verifier(spec["name"], **dict(spec.get("params") or {}))


@dataclass(frozen=True)
class TurnKindVerifier:
    message: dict[str, Any] = field(default_factory=lambda: {"name": "message"})
    tool_calls: dict[str, Any] = field(default_factory=lambda: {"name": "tool_call"})

    def __post_init__(self) -> None:
        built = {k: _build(dict(getattr(self, k)), k) for k in KINDS}
        object.__setattr__(self, "_built", built)

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.kind not in KINDS:
            raise ValueError(f"expected action is {expected.kind}: {expected.error}")
        if action.kind != expected.kind:
            return result(0.0, f"wrong_kind:{action.kind}")
        return self._built[expected.kind].verify(state, expected, action)


VERIFIERS.register("turn_kind", TurnKindVerifier)
