"""The JSON Schema subset, numeric-string coercion and defaults, on hand-made schemas."""

import pytest

from pivotrl_jax.rewards.schema import coerce_numeric_strings, fill_defaults, schema_errors

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "default": 1},
        "unit": {"type": "string", "enum": ["C", "F"], "default": "C"},
        "lat": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "opt": {"type": ["string", "null"]},
        "nested": {
            "type": "object",
            "properties": {"deep": {"type": "boolean", "default": False}},
        },
    },
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "value, n_errors, fragment",
    [
        ({"city": "Oslo"}, 0, None),
        ({"city": "Oslo", "days": 3, "unit": "F", "lat": 1, "tags": [], "opt": None}, 0, None),
        ({"city": "Oslo", "days": 3.0}, 0, None),  # 3.0 is an integer in JSON Schema
        ({}, 1, "missing required 'city'"),
        ({"city": 5}, 1, "$.city: expected string"),
        ({"city": "x", "days": 2.5}, 1, "$.days: expected integer"),
        ({"city": "x", "days": True}, 1, "$.days: expected integer"),
        ({"city": "x", "lat": "1.0"}, 1, "$.lat: expected number"),
        ({"city": "x", "unit": "K"}, 1, "not in enum"),
        ({"city": "x", "tags": ["a", 2]}, 1, "$.tags[1]: expected string"),
        ({"city": "x", "extra": 1}, 1, "unexpected property 'extra'"),
        ({"city": "x", "nested": {"deep": "no"}}, 1, "$.nested.deep: expected boolean"),
        ({"days": "x", "unit": "K"}, 3, None),
    ],
)
def test_schema_errors(value, n_errors, fragment):
    errors = schema_errors(value, WEATHER)
    assert len(errors) == n_errors, errors
    if fragment:
        assert fragment in errors[0]


def test_any_of_and_const():
    schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert schema_errors("a", schema) == []
    assert schema_errors(3, schema) == []
    assert schema_errors(1.5, schema) == ["$: matches no branch of anyOf"]
    assert schema_errors(True, {"const": 1}) == ["$: True is not the constant"]
    assert schema_errors(1, {"const": 1}) == []


def test_coerce_numeric_strings():
    got = coerce_numeric_strings(
        {"city": "12", "days": "3", "lat": " 2.50 ", "tags": ["7"], "opt": "4"}, WEATHER
    )
    assert got == {"city": "12", "days": 3, "lat": 2.5, "tags": ["7"], "opt": "4"}
    assert coerce_numeric_strings({"days": "3.5"}, WEATHER) == {"days": "3.5"}
    assert coerce_numeric_strings({"days": "3.0"}, WEATHER) == {"days": 3}
    assert coerce_numeric_strings({"days": "nan"}, WEATHER) == {"days": "nan"}
    assert coerce_numeric_strings({"lat": "abc"}, WEATHER) == {"lat": "abc"}
    assert coerce_numeric_strings(
        [{"n": "2"}], {"items": {"properties": {"n": {"type": "number"}}}}
    ) == [{"n": 2}]


def test_fill_defaults():
    assert fill_defaults({"city": "x", "nested": {}}, WEATHER) == {
        "city": "x",
        "days": 1,
        "unit": "C",
        "nested": {"deep": False},
    }
    # explicit values are kept
    assert fill_defaults({"city": "x", "days": 4}, WEATHER)["days"] == 4
    assert fill_defaults("x", WEATHER) == "x"
