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


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) or (
        isinstance(v, int | float) and not isinstance(v, bool)
    )


def argument_mismatch(
    expected: Any, actual: Any, rules: ArgumentRules, schema: Any = None, path: str = "$"
) -> Mismatch | None:
    """None when `actual` matches `expected` under the rules above, else (reason, path)."""
    te = type(expected)
    if te is dict:
        if type(actual) is not dict:
            return "type_different", path
        if expected.keys() != actual.keys():
            return "keys_different", path
        props = schema.get("properties") if isinstance(schema, dict) else None
        for k, ev in expected.items():
            sub = props.get(k) if props else None
            bad = argument_mismatch(ev, actual[k], rules, sub, f"{path}.{k}")
            if bad is not None:
                return bad
        return None
    if te is str:
        if type(actual) is not str:
            return "type_different", path
        return (
            None if _strings_match(expected, actual, rules, schema) else ("value_different", path)
        )
    if te is list:
        if type(actual) is not list:
            return "type_different", path
        if len(expected) != len(actual):
            return "length_different", path
        items = schema.get("items") if isinstance(schema, dict) else None
        for i, (ev, av) in enumerate(zip(expected, actual)):
            bad = argument_mismatch(ev, av, rules, items, f"{path}[{i}]")
            if bad is not None:
                return bad
        return None
    if _is_number(expected):
        if not _is_number(actual):
            return "type_different", path
        if te is int and type(actual) is int:
            return None if expected == actual else ("value_different", path)
        return None if abs(expected - actual) < rules.float_tol else ("value_different", path)
    if type(actual) is not te:
        return "type_different", path
    return None if expected == actual else ("value_different", path)
