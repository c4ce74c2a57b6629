"""`similarity`: difflib's SequenceMatcher ratio of the two actions' text against a threshold.

ratio = 2·M / (|e| + |a|), M the characters in matching blocks. The text compared is the
rendered action (`render_action`, canonical JSON for calls), or with `argument="keystrokes"` the
string value of that argument of a single call (the names must then be equal). The reference's
terminal chain credits ratio >= 0.95 directly. `autojunk` is difflib's heuristic that ignores
characters frequent in texts of 200+ characters: faster on long texts, but it can lower the ratio
of near-identical ones, so it is off by default (`SequenceMatcher`'s own default is on).

>>> from pivotrl_jax.rewards.actions import parse_action
>>> v = SimilarityVerifier(threshold=0.9)
>>> v.verify(VerifyState(), parse_action("ls -la /tmp"), parse_action("ls -la /tmp/")).reward
1.0
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pivotrl_jax.rewards.actions import Action, render_action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result


def action_string(action: Action, argument: str | None) -> str | None:
    """The text to compare: the named argument of a single call, else the whole rendered action;
    None when the argument is asked for but missing or not a string."""
    if argument is None:
        return render_action(action, canonical=True)
    if len(action.tool_calls) != 1:
        return action.text.strip() if not action.tool_calls else None
    value = action.tool_calls[0].arguments.get(argument)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class SimilarityVerifier:
    threshold: float = 0.95
    argument: str | None = None
    autojunk: bool = False

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.error is not None:
            raise ValueError(f"expected action is invalid: {expected.error}")
        if action.error is not None:
            return result(0.0, f"invalid_action:{action.error}")
        if (
            self.argument is not None
            and expected.tool_calls
            and action.tool_calls
            and expected.tool_calls[0].name != action.tool_calls[0].name
        ):
            return result(0.0, "name_different")
        e, a = action_string(expected, self.argument), action_string(action, self.argument)
        if e is None or a is None:
            return result(0.0, "argument_missing")
        ratio = difflib.SequenceMatcher(None, e, a, autojunk=self.autojunk).ratio()
        reward = float(ratio >= self.threshold)
        return result(reward, "similar" if reward else "dissimilar", ratio=round(ratio, 6))


VERIFIERS.register("similarity", SimilarityVerifier)
