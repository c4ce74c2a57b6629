"""The argument-value rule of REFERENCE §2, one table row per clause, plus the word overlap."""

import pytest

from pivotrl_jax.rewards.arguments import ArgumentRules, argument_mismatch, word_overlap

R = ArgumentRules()  # threshold 0.1


@pytest.mark.parametrize(
    "expected, actual, rules, mismatch",
    [
        # objects: identical key sets, values recursively
        ({"a": 1, "b": "x"}, {"b": "x", "a": 1}, R, None),
        ({"a": 1}, {"a": 1, "b": 2}, R, ("keys_different", "$")),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}, R, ("value_different", "$.a.b.c")),
        ({"a": {"b": {}}}, {"a": {"b": {}}}, R, None),
        ({"a": {}}, {"a": []}, R, ("type_different", "$.a")),
        # lists: equal length, element-wise, order matters
        ({"l": []}, {"l": []}, R, None),
        ({"l": [1, 2]}, {"l": [2, 1]}, R, ("value_different", "$.l[0]")),
        ({"l": [1, 2]}, {"l": [1, 2, 3]}, R, ("length_different", "$.l")),
        ({"l": [{"x": "a"}]}, {"l": [{"x": "b"}]}, R, ("value_different", "$.l[0].x")),
        # floats within 1e-6; ints exact; 1 and 1.0 are the same JSON number
        ({"f": 0.1 + 0.2}, {"f": 0.3}, R, None),
        ({"f": 1.0}, {"f": 1.0 + 2e-6}, R, ("value_different", "$.f")),
        ({"f": 1.0}, {"f": 1}, R, None),
        ({"i": 3}, {"i": 4}, R, ("value_different", "$.i")),
        ({"i": 10**20}, {"i": 10**20 + 1}, R, ("value_different", "$.i")),
        ({"f": 1.0}, {"f": 1.0 + 5e-7}, ArgumentRules(float_tol=1e-6), None),
        ({"f": 1.0}, {"f": 1.5}, ArgumentRules(float_tol=1.0), None),
        # bools are not numbers; null only equals null
        ({"b": True}, {"b": 1}, R, ("type_different", "$.b")),
        ({"b": 1}, {"b": True}, R, ("type_different", "$.b")),
        ({"b": False}, {"b": False}, R, None),
        ({"n": None}, {"n": None}, R, None),
        ({"n": None}, {"n": "None"}, R, ("type_different", "$.n")),
        ({"s": "1"}, {"s": 1}, R, ("type_different", "$.s")),
        # strings with fewer than 2 words: exact
        ({"s": "Paris"}, {"s": "paris"}, R, ("value_different", "$.s")),
        ({"s": "Paris"}, {"s": "Paris"}, R, None),
        ({"s": ""}, {"s": ""}, R, None),
        ({"s": "Paris"}, {"s": "Paris France"}, R, ("value_different", "$.s")),
        ({"s": "日本"}, {"s": "日本"}, R, None),
        # longer strings: bag-of-words overlap >= threshold
        ({"s": "red running shoes"}, {"s": "Shoes RED"}, R, None),  # 2/5 = 0.4
        ({"s": "red shoes"}, {"s": "blue hats"}, R, ("value_different", "$.s")),  # 0
        ({"s": "a b c d e f g h i j"}, {"s": "a k l m n o p q r s"}, R, ("value_different", "$.s")),
        ({"s": "a b c d e"}, {"s": "a z y x w"}, R, None),  # 1/10 = 0.1 reaches it
    ],
)
def test_argument_rule(expected, actual, rules, mismatch):
    assert argument_mismatch(expected, actual, rules) == mismatch


def test_threshold_above_half_rejects_identical_long_strings():
    rules = ArgumentRules(word_threshold=0.6)
    assert argument_mismatch({"s": "same words"}, {"s": "same words"}, rules) == (
        "value_different",
        "$.s",
    )
    # a one-word string is still compared exactly, so it passes
    assert argument_mismatch({"s": "one"}, {"s": "one"}, rules) is None
    assert argument_mismatch({"s": "x y"}, {"s": "x y"}, ArgumentRules(word_threshold=0.5)) is None


def test_zero_threshold_accepts_any_long_strings():
    rules = ArgumentRules(word_threshold=0.0)
    assert argument_mismatch({"s": "fix the bug"}, {"s": "totally other text"}, rules) is None
    assert argument_mismatch({"s": "fix"}, {"s": "other"}, rules) == ("value_different", "$.s")


@pytest.mark.parametrize(
    "e, a, value",
    [
        ("a b", "a b", 0.5),
        ("a a b", "a b b", 2 / 6),  # multiset: {a, b} in common
        ("Red SHOES", "red shoes", 0.5),
        ("a b c", "", 0.0),
        ("", "", 0.0),
        ("x  y\tz", "z y x", 0.5),
    ],
)
def test_word_overlap(e, a, value):
    assert word_overlap(e, a) == pytest.approx(value)


def test_very_long_strings():
    long = " ".join(f"w{i}" for i in range(20000))
    assert argument_mismatch({"s": long}, {"s": long}, R) is None
    assert word_overlap(long, long[: len(long) // 2]) > 0.3


def test_enum_and_short_folding_options():
    schema = {"properties": {"unit": {"type": "string", "enum": ["Celsius", "Fahrenheit"]}}}
    e, a = {"unit": "Celsius"}, {"unit": " celsius "}
    assert argument_mismatch(e, a, R, schema) == ("value_different", "$.unit")
    assert argument_mismatch(e, a, ArgumentRules(fold_enums=True), schema) is None
    # without an enum in the schema, fold_enums does nothing
    assert argument_mismatch(e, a, ArgumentRules(fold_enums=True), {}) == (
        "value_different",
        "$.unit",
    )
    assert argument_mismatch({"s": "Yes"}, {"s": "YES"}, ArgumentRules(fold_short=True)) is None
    assert argument_mismatch({"s": "Yes"}, {"s": "No"}, ArgumentRules(fold_short=True)) is not None
