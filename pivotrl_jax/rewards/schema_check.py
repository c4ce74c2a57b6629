"""`schema`: is the candidate a well-formed action of the expected kind?

Reward 1 when the candidate is valid (parses), is a message where a message was expected or tool
calls where calls were expected, and (when the state offers tools) every call names an offered
tool and its arguments conform to that tool's JSON Schema (`schema.schema_errors`). It says
nothing about whether the action is the right one: in a chain it rejects early
(`decide_on="fail"`) and leaves the rest to later steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result
from pivotrl_jax.rewards.schema import schema_errors


@dataclass(frozen=True)
class SchemaVerifier:
    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if action.error is not None:
            return result(0.0, f"invalid_action:{action.error}")
        if bool(expected.tool_calls) != bool(action.tool_calls):
            return result(0.0, "kind_different")
        schemas = state.schemas
        if schemas:
            for call in action.tool_calls:
                if call.name not in schemas:
                    return result(0.0, "unknown_tool", tool=call.name)
                errors = schema_errors(call.arguments, schemas[call.name])
                if errors:
                    return result(0.0, "schema_invalid", errors=errors[:5])
        return result(1.0, "well_formed")


VERIFIERS.register("schema", SchemaVerifier)
