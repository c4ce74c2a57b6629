"""Functional reward verifiers: is a sampled action as good as the demonstrated one?

Importing this package registers every verifier in `VERIFIERS`; `build_verifier(name, **params)`
makes one and `run_verifier` runs it under a time limit. See docs/verifiers.md.
"""

from pivotrl_jax.rewards import (
    chain,
    exact,
    isolated,
    judge,
    message,
    schema_check,
    shell,
    similarity,
    tool_call,
    turn_kind,
)
from pivotrl_jax.rewards.actions import Action, ToolCall, parse_action, parse_completion
from pivotrl_jax.rewards.base import (
    VERIFIERS,
    Verifier,
    VerifyResult,
    VerifyState,
    build_verifier,
)
from pivotrl_jax.rewards.runner import VerifierStats, alarm_scope, run_verifier
from pivotrl_jax.rewards.sandbox import SANDBOXES, CommandSandbox, SandboxResult

__all__ = [
    "SANDBOXES",
    "VERIFIERS",
    "Action",
    "CommandSandbox",
    "SandboxResult",
    "ToolCall",
    "Verifier",
    "VerifierStats",
    "VerifyResult",
    "VerifyState",
    "alarm_scope",
    "build_verifier",
    "chain",
    "exact",
    "isolated",
    "judge",
    "message",
    "parse_action",
    "parse_completion",
    "run_verifier",
    "schema_check",
    "shell",
    "similarity",
    "tool_call",
    "turn_kind",
]
