"""When two tool-call argument values are functionally the same (the reference rule, REFERENCE §2).

`argument_mismatch(expected, actual, rules)` returns None when they match, else (reason, path):

- objects: identical key sets, every value matching;
- lists: equal length, element-wise;
- numbers (bools excluded): both ints -> equal; otherwise |e - a| < `float_tol` (1e-6), so 1 and
  1.0 match (the reference calls int vs float a type difference; JSON does not distinguish them);
- strings: split on whitespace after lower-casing into word multisets E and A; if either has
  fewer than 2 words the raw strings must be equal; otherwise they match when
  |E ∩ A| / (|E| + |A|) >= `word_threshold` (multiset intersection; identical strings give 0.5,
  so a threshold above 0.5 rejects everything);
- anything else (bool, null): same type and equal.

Options beyond the reference, all off by default: `fold_enums` compares strings whose schema has
an `enum` case- and whitespace-insensitively; `fold_short` does so for every string with fewer
than 2 words. Both need the argument's JSON Schema, passed alongside the values.

>>> rules = ArgumentRules(word_threshold=0.3)
>>> argument_mismatch({"q": "cheap flights to Paris"}, {"q": "flights Paris cheap"}, rules) is None
True
>>> argument_mismatch({"n": [1, 2]}, {"n": [1, 3]}, rules)
('value_different', '$.n[1]')
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

Mismatch = tuple[str, str]  # (reason, JSON path)
_Found = tuple[str, list[str]]  # (reason, path steps, innermost first)


@dataclass(frozen=True)
class ArgumentRules:
    word_threshold: float = 0.1
    float_tol: float = 1e-6
    fold_enums: bool = False
    fold_short: bool = False


def word_overlap(expected: str, actual: str) -> float:
    """|E ∩ A| / (|E| + |A|) over lower-cased, whitespace-split word multisets (0 if both empty)."""
    e, a = expected.lower().split(), actual.lower().split()
    total = len(e) + len(a)
    if not total:
        return 0.0
    return sum((Counter(e) & Counter(a)).values()) / total


def fold(s: str) -> str:
    """Case- and whitespace-insensitive form of a string."""
    return " ".join(s.split()).casefold()


def _strings_match(e: str, a: str, rules: ArgumentRules, schema: Any) -> bool:
    if e == a:
        return rules.word_threshold <= 0.5 or len(e.split()) < 2
    short = len(e.split()) < 2 or len(a.split()) < 2
    if rules.fold_enums and isinstance(schema, dict) and "enum" in schema:
        return fold(e) == fold(a)
    if short:
        return rules.fold_short and fold(e) == fold(a)
    return word_overlap(e, a) >= rules.word_threshold


def argument_mismatch(
    expected: Any, actual: Any, rules: ArgumentRules, schema: Any = None
) -> Mismatch | None:
    """None when `actual` matches `expected` under the rules above, else (reason, JSON path)."""
    bad = _mismatch(expected, actual, rules, schema)
    if bad is None:
        return None
    reason, steps = bad
    return reason, "$" + "".join(reversed(steps))


def _mismatch(expected: Any, actual: Any, rules: ArgumentRules, schema: Any) -> _Found | None:
    """The rule itself; the path to a mismatch is collected innermost first, only on failure."""
    te = type(expected)
    if te is dict:
        if type(actual) is not dict:
            return "type_different", []
        if expected.keys() != actual.keys():
            return "keys_different", []
        props = schema.get("properties") if schema and type(schema) is dict else None
        for k, ev in expected.items():
            bad = _mismatch(ev, actual[k], rules, props.get(k) if props else None)
            if bad is not None:
                bad[1].append(f".{k}")
                return bad
        return None
    if te is str:
        if type(actual) is not str:
            return "type_different", []
        if _strings_match(expected, actual, rules, schema):
            return None
        return "value_different", []
    if te is list:
        if type(actual) is not list:
            return "type_different", []
        if len(expected) != len(actual):
            return "length_different", []
        items = schema.get("items") if schema and type(schema) is dict else None
        for i, (ev, av) in enumerate(zip(expected, actual)):
            bad = _mismatch(ev, av, rules, items)
            if bad is not None:
                bad[1].append(f"[{i}]")
                return bad
        return None
    if te is int or te is float:
        ta = type(actual)
        if ta is not int and ta is not float:
            return "type_different", []
        if te is int and ta is int:
            return None if expected == actual else ("value_different", [])
        return None if abs(expected - actual) < rules.float_tol else ("value_different", [])
    if type(actual) is not te:
        return "type_different", []
    return None if expected == actual else ("value_different", [])
