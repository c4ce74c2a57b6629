"""The Verifier seam: `verify(state, expected, action) -> VerifyResult`, and its registry.

A verifier is a frozen dataclass whose fields are its parameters, registered by name in
`VERIFIERS`; `build_verifier("tool_call", threshold=0.3)` makes one. It scores a candidate Action
against the demonstrated one: reward 1 means "functionally acceptable at this state".

>>> v = build_verifier("exact")
>>> v.verify(VerifyState(), parse_action("ok"), parse_action(" ok ")).reward
1.0
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.actions import Action, parse_action

__all__ = [
    "VERIFIERS",
    "Action",
    "Verifier",
    "VerifyResult",
    "VerifyState",
    "build_verifier",
    "parse_action",
    "tool_schemas",
]


@dataclass(frozen=True)
class VerifyState:
    """What a verifier may look at besides the two actions: the history before the turn, the
    offered tools (OpenAI specs) and the name of the domain's environment, if any."""

    messages: tuple[dict[str, Any], ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    env: str | None = None

    @functools.cached_property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """Tool name -> parameter JSON Schema (`tool_schemas`), computed once per state."""
        return tool_schemas(self.tools)


@dataclass(frozen=True)
class VerifyResult:
    """`reward` in [0, 1]; `info["reason"]` names the outcome. `decisive` is False when the
    verifier could not tell (a chain then asks the next one)."""

    reward: float
    info: dict[str, Any] = field(default_factory=dict)
    decisive: bool = True

    @property
    def reason(self) -> str:
        return str(self.info.get("reason", ""))


def result(reward: float, reason: str, decisive: bool = True, **info: Any) -> VerifyResult:
    return VerifyResult(reward=float(reward), info={"reason": reason, **info}, decisive=decisive)


class Verifier(Protocol):
    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult: ...


VERIFIERS: Registry[type] = Registry("verifier")


def build_verifier(name: str, **params: Any) -> Verifier:
    """The verifier registered as `name`, configured with `params` (unknown ones are named)."""
    cls = VERIFIERS.get(name)
    known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
    if known is not None:
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"verifier {name!r} has no parameter {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or '(none)'}"
            )
    return cls(**params)


def tool_schemas(tools: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Tool name -> JSON Schema of its parameters, from OpenAI (`{"type": "function", "function":
    {...}}`) or flat (`{"name", "parameters"}`) specs; specs without a name are skipped."""
    out: dict[str, dict[str, Any]] = {}
    for spec in tools:
        if not isinstance(spec, dict):
            continue
        fn = spec.get("function") if isinstance(spec.get("function"), dict) else spec
        name, params = fn.get("name"), fn.get("parameters")
        if isinstance(name, str):
            out[name] = params if isinstance(params, dict) else {}
    return out
