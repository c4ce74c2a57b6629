"""`tool_call`: the functional verifier of conversational tool use (REFERENCE §2).

- Expected a message: any valid assistant text message scores 1, any tool call 0.
- Expected tool call(s): a message scores 0. Otherwise the expected and candidate calls form a
  bipartite graph, an edge where the names are equal and the arguments match
  (`arguments.argument_mismatch`); with m = the size of a maximum matching, |E| expected and |A|
  candidate calls, the reward mode gives
    binary:      1 if m = |E| = |A| else 0
    fractional:  m / max(|E|, |A|)      (extra calls cost as much as missing ones)
    f1:          2m / (|E| + |A|)
- An invalid candidate (malformed call) scores 0 with reason `invalid_action:<why>`.

Options beyond the reference (default off): `validate_schema` rejects a candidate call to a tool
that is not offered (when the state offers tools) or whose arguments break the tool's JSON
Schema (its edges are dropped);
`coerce_numeric_strings` reads "3" as 3 where the schema asks for a number; `use_defaults` fills
omitted optional arguments with their schema default on both sides; `fold_enums` and
`fold_short_strings` compare enum values / one-word strings case- and whitespace-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.actions import Action, ToolCall
from pivotrl_jax.rewards.arguments import ArgumentRules, argument_mismatch
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result
from pivotrl_jax.rewards.matching import maximum_matching
from pivotrl_jax.rewards.schema import coerce_numeric_strings, fill_defaults, schema_errors

REWARD_MODES: Registry = Registry("parallel-call reward mode")
REWARD_MODES.register("binary", lambda m, ne, na: float(m == ne == na))
REWARD_MODES.register("fractional", lambda m, ne, na: m / max(ne, na))
REWARD_MODES.register("f1", lambda m, ne, na: 2 * m / (ne + na))


def call_mismatch(
    expected: ToolCall, actual: ToolCall, rules: ArgumentRules, schema: Any = None
) -> str | None:
    """None when `actual` is functionally `expected`, else a short reason."""
    if expected.name != actual.name:
        return "name_different"
    bad = argument_mismatch(expected.arguments, actual.arguments, rules, schema)
    return None if bad is None else f"argument_{bad[0]}:{bad[1]}"


@dataclass(frozen=True)
class ToolCallVerifier:
    threshold: float = 0.1
    float_tol: float = 1e-6
    mode: str = "binary"
    validate_schema: bool = False
    coerce_numeric_strings: bool = False
    use_defaults: bool = False
    fold_enums: bool = False
    fold_short_strings: bool = False

    def __post_init__(self) -> None:
        REWARD_MODES.get(self.mode)  # fail at construction, listing the modes
        rules = ArgumentRules(
            self.threshold, self.float_tol, self.fold_enums, self.fold_short_strings
        )
        object.__setattr__(self, "_rules", rules)
        object.__setattr__(self, "_score", REWARD_MODES.get(self.mode))
        uses_schema = (
            self.validate_schema
            or self.coerce_numeric_strings
            or self.use_defaults
            or self.fold_enums
        )
        object.__setattr__(self, "_uses_schema", uses_schema)

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.error is not None:
            raise ValueError(f"expected action is invalid: {expected.error}")
        if action.error is not None:
            return result(0.0, f"invalid_action:{action.error}")
        if not expected.tool_calls:
            if action.tool_calls:
                return result(0.0, "tool_call_for_message")
            return result(1.0, "message")
        if not action.tool_calls:
            return result(0.0, "message_for_tool_call")
        schemas = state.schemas if self._uses_schema else {}
        exp_calls = [self._prepare(c, schemas) for c in expected.tool_calls]
        act_calls = [self._prepare(c, schemas) for c in action.tool_calls]
        invalid = self._schema_failures(action.tool_calls, schemas)
        if len(exp_calls) == 1 and len(act_calls) == 1:
            why = invalid.get(0) or call_mismatch(
                exp_calls[0], act_calls[0], self._rules, schemas.get(exp_calls[0].name)
            )
            reward = self._score(int(why is None), 1, 1)
            return result(
                reward, "match" if why is None else why, matched=[[0, 0]] if why is None else []
            )
        edges, first_reason = [], None
        for e in exp_calls:
            row = []
            for j, a in enumerate(act_calls):
                why = invalid.get(j) or call_mismatch(e, a, self._rules, schemas.get(e.name))
                if why is None:
                    row.append(j)
                elif first_reason is None:
                    first_reason = why
            edges.append(row)
        pairs = maximum_matching(edges, len(act_calls))
        reward = self._score(len(pairs), len(exp_calls), len(act_calls))
        if reward == 1.0:
            reason = "match"
        else:
            reason = "partial_match" if pairs else (first_reason or "no_match")
        return result(
            reward,
            reason,
            matched=[list(p) for p in pairs],
            n_expected=len(exp_calls),
            n_actual=len(act_calls),
        )

    def _prepare(self, call: ToolCall, schemas: dict[str, Any]) -> ToolCall:
        schema = schemas.get(call.name)
        if schema is None or not (self.coerce_numeric_strings or self.use_defaults):
            return call
        args = call.arguments
        if self.coerce_numeric_strings:
            args = coerce_numeric_strings(args, schema)
        if self.use_defaults:
            args = fill_defaults(args, schema)
        return ToolCall(call.name, args)

    def _schema_failures(
        self, calls: tuple[ToolCall, ...], schemas: dict[str, Any]
    ) -> dict[int, str]:
        """Candidate index -> why it breaks its tool's schema (only with `validate_schema`)."""
        if not self.validate_schema or not schemas:
            return {}
        out = {}
        for j, call in enumerate(calls):
            if call.name not in schemas:
                out[j] = "unknown_tool"
                continue
            args = call.arguments
            if self.coerce_numeric_strings:
                args = coerce_numeric_strings(args, schemas[call.name])
            errors = schema_errors(args, schemas[call.name])
            if errors:
                out[j] = f"schema_invalid:{errors[0]}"
        return out


VERIFIERS.register("tool_call", ToolCallVerifier)
