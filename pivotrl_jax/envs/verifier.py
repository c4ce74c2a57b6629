"""`env_acceptable`: a functional verifier that executes both actions in the domain's simulator.

Registered in `pivotrl_jax.rewards.base.VERIFIERS` when `pivotrl_jax.envs` is imported:

    build_verifier("env_acceptable", domain="tool_use").verify(state, expected, action)

It rebuilds the state from `state.messages` (the session in the system prompt plus the earlier
tool calls) and scores 1 when the domain's `acceptable` says the action does what the expected
one does (see docs/envs.md). `domain=""` uses `state.env`; `progress=True` also accepts
writes that move the state toward the task's goal (`envs/progress.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pivotrl_jax.envs.domains import DOMAINS
from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result


@dataclass(frozen=True)
class EnvAcceptableVerifier:
    domain: str = ""
    progress: bool = False  # also accept writes that move the state toward the task's goal

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.error is not None:
            raise ValueError(f"expected action is invalid: {expected.error}")
        if action.error is not None:
            return result(0.0, f"invalid_action:{action.error}")
        name = self.domain or state.env
        if not name:
            raise ValueError("no domain: set domain= or VerifyState.env")
        check = DOMAINS.get(name).acceptable
        if check is None:
            raise ValueError(f"domain {name!r} has no environment acceptability check")
        ok = check(list(state.messages), expected, action, progress=self.progress)
        return result(float(ok), "same_effect" if ok else "different_effect")


VERIFIERS.register("env_acceptable", EnvAcceptableVerifier)
