"""`exact` and `normalized`: string equality of the rendered actions (the strict ablation).

`exact` is the paper's strict reward 1[a = a*]: both actions rendered by `render_action` (text,
then one JSON line per call as the chat template writes it) and trimmed must be equal, so key
order, number spelling (1 vs 1.0) and inner whitespace all count. `normalized` first collapses
runs of whitespace in the text and writes call arguments as canonical JSON (sorted keys, no
spaces), so only a difference in content is a difference.

>>> from pivotrl_jax.rewards.actions import parse_action
>>> a = parse_action({"type": "function_call", "name": "f", "arguments": '{"b": 1, "a": 2}'})
>>> b = parse_action({"type": "function_call", "name": "f", "arguments": '{"a": 2, "b": 1}'})
>>> ExactVerifier().verify(VerifyState(), a, b).reward
0.0
>>> NormalizedVerifier().verify(VerifyState(), a, b).reward
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from pivotrl_jax.rewards.actions import Action, render_action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result


def _compare(expected: Action, action: Action, canonical: bool) -> VerifyResult:
    if expected.error is not None:
        raise ValueError(f"expected action is invalid: {expected.error}")
    if action.error is not None:
        return result(0.0, f"invalid_action:{action.error}")
    e, a = render_action(expected, canonical), render_action(action, canonical)
    if canonical:
        e, a = " ".join(e.split()), " ".join(a.split())
    return result(1.0, "match") if e.strip() == a.strip() else result(0.0, "different")


@dataclass(frozen=True)
class ExactVerifier:
    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        return _compare(expected, action, canonical=False)


@dataclass(frozen=True)
class NormalizedVerifier:
    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        return _compare(expected, action, canonical=True)


VERIFIERS.register("exact", ExactVerifier)
VERIFIERS.register("normalized", NormalizedVerifier)
