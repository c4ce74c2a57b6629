"""Goal-directed changes: the lenient acceptability both agentic domains offer (`progress=True`).

Strict acceptability asks for the expected action's exact effect. With progress allowed, a write
is also acceptable when every part of the state it changes takes its goal value: another order
of the same needed writes (cancel O2 before O1), or several of them at once.

>>> moves_toward({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 2, "b": 3})
True
>>> moves_toward({"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 2, "b": 3})
False
"""

from __future__ import annotations

from typing import Any


def flatten(value: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """Nested dicts -> {path: leaf}; lists are leaves (as tuples)."""
    if isinstance(value, dict):
        out: dict[tuple, Any] = {}
        for k, v in value.items():
            out |= flatten(v, (*prefix, k))
        return out
    return {prefix: tuple(value) if isinstance(value, list) else value}


_ABSENT = object()


def moves_toward(before: dict, after: dict, goal: dict) -> bool:
    """Something changed, and every changed key (added, removed or rewritten) now has its goal
    value (absent when the goal lacks it)."""
    changed = [
        k for k in before.keys() | after.keys() if before.get(k, _ABSENT) != after.get(k, _ABSENT)
    ]
    return bool(changed) and all(after.get(k, _ABSENT) == goal.get(k, _ABSENT) for k in changed)
