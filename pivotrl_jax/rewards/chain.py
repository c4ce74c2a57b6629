"""`chain`: ordered fallbacks; the first step that gives a decisive answer wins.

Each step names a verifier, its parameters, an optional time limit and which of its outcomes end
the chain (`decide_on`): "any" (every decisive result), "pass" (only reward >= `pass_at`) or
"fail" (only reward < `pass_at`). A result the verifier itself marks not decisive (an
unparseable judge answer, an error, a time-out) never ends the chain. When no step decides, the
reward is 0 with reason `undecided`.

The default is the terminal reference: the action must be well formed (`schema`, ends the chain
only on failure), keystrokes with SequenceMatcher ratio >= 0.95 score 1 (`similarity`, ends it
only on success), and otherwise an LLM judge decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, build_verifier
from pivotrl_jax.rewards.runner import run_verifier

DECISION_RULES: Registry = Registry("chain decision rule")
DECISION_RULES.register("any", lambda reward, pass_at: True)
DECISION_RULES.register("pass", lambda reward, pass_at: reward >= pass_at)
DECISION_RULES.register("fail", lambda reward, pass_at: reward < pass_at)

TERMINAL_STEPS: tuple[dict[str, Any], ...] = (
    {"verifier": "schema", "decide_on": "fail"},
    {"verifier": "similarity", "params": {"threshold": 0.95}, "decide_on": "pass"},
    {"verifier": "judge", "decide_on": "any"},
)

_STEP_KEYS = frozenset({"verifier", "params", "decide_on", "time_limit_s"})


@dataclass(frozen=True)
class ChainStep:
    name: str
    verifier: Any
    decide_on: str
    time_limit_s: float | None


def build_step(spec: dict[str, Any], index: int) -> ChainStep:
    unknown = sorted(set(spec) - _STEP_KEYS)
    if unknown or "verifier" not in spec:
        raise ValueError(
            f"chain step {index}: keys are {sorted(_STEP_KEYS)} ('verifier' required); "
            f"got {sorted(spec)}"
        )
    decide_on = spec.get("decide_on", "any")
    DECISION_RULES.get(decide_on)
    name = spec["verifier"]
    return ChainStep(
        name=f"{index}:{name}",
        verifier=build_verifier(name, **dict(spec.get("params") or {})),
        decide_on=decide_on,
        time_limit_s=spec.get("time_limit_s"),
    )


@dataclass(frozen=True)
class ChainVerifier:
    steps: tuple[dict[str, Any], ...] = TERMINAL_STEPS
    pass_at: float = 1.0

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a chain needs at least one step")
        built = tuple(build_step(dict(s), i) for i, s in enumerate(self.steps))
        object.__setattr__(self, "_built", built)

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        trace, timings = [], {}
        for step in self._built:
            res = run_verifier(
                step.verifier,
                state,
                expected,
                action,
                time_limit_s=step.time_limit_s,
                name=step.name,
            )
            timings.update(res.info.get("timings", {}))
            trace.append({"step": step.name, "reward": res.reward, "reason": res.reason})
            if res.decisive and DECISION_RULES.get(step.decide_on)(res.reward, self.pass_at):
                info = {k: v for k, v in res.info.items() if k not in ("reason", "timings")}
                return VerifyResult(
                    res.reward,
                    {
                        "reason": f"{step.name}:{res.reason}",
                        "decided_by": step.name,
                        "steps": trace,
                        "timings": timings,
                        **info,
                    },
                )
        return VerifyResult(0.0, {"reason": "undecided", "steps": trace, "timings": timings})


VERIFIERS.register("chain", ChainVerifier)
