"""Goal-directed changes: the lenient acceptability both agentic domains offer (`progress=True`).

Strict acceptability asks for the expected action's exact effect. With progress allowed, a write
is also acceptable when every part of the state it changes takes its goal value (another order
of the same needed writes: cancel O2 before O1, or several of them at once) and it destroys
nothing the goal still needs (deleting a file that is to be moved is not progress).

>>> moves_toward({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 2, "b": 3})
True
>>> moves_toward({"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 2, "b": 3})
False
>>> moves_toward({"a": "x", "b": None}, {"b": None}, {"b": "x"})  # "x" is gone for good
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
    """Something changed, every changed key (added, removed or rewritten) now has its goal value
    (absent when the goal lacks it), and every value the goal still needs (at a key `after` does
    not hold it at) that existed before still exists somewhere."""
    changed = [
        k for k in before.keys() | after.keys() if before.get(k, _ABSENT) != after.get(k, _ABSENT)
    ]
    if not changed or any(after.get(k, _ABSENT) != goal.get(k, _ABSENT) for k in changed):
        return False
    had, has = set(map(_key, before.values())), set(map(_key, after.values()))
    needed = {_key(v) for k, v in goal.items() if after.get(k, _ABSENT) != v}
    return not (needed & had) - has


def _key(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)
