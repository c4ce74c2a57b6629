"""The `tool_call` verifier: message/call rules, parallel calls, reward modes, schema options,
and properties (self-match, key order and JSON whitespace invariance, sensitivity to changes)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotrl_jax.rewards import VerifyState, build_verifier, parse_action
from pivotrl_jax.rewards.actions import Action, ToolCall

S = VerifyState()


def fc(name, **args):
    return {"type": "function_call", "name": name, "arguments": json.dumps(args)}


def hermes(*calls):
    return "".join(
        f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>" for n, a in calls
    )


def score(expected, response, state=S, **params):
    v = build_verifier("tool_call", **params)
    return v.verify(state, parse_action(expected), parse_action(response))


@pytest.mark.parametrize(
    "expected, response, reward, reason",
    [
        # expected a message: any text is fine, a call is not
        ({"type": "message", "content": "Done!"}, "Something else entirely", 1.0, "message"),
        ({"type": "message", "content": "Done!"}, hermes(("f", {})), 0.0, "tool_call_for_message"),
        (
            {"type": "message", "content": "Hi"},
            "<tool_call>{bad</tool_call>",
            0.0,
            "invalid_action:call_invalid_json",
        ),
        # expected a call
        (fc("get", id=3), "I cannot do that", 0.0, "message_for_tool_call"),
        (fc("get", id=3), hermes(("get", {"id": 3})), 1.0, "match"),
        (fc("get", id=3), hermes(("Get", {"id": 3})), 0.0, "name_different"),
        (fc("get", id=3), hermes(("get", {"id": 4})), 0.0, "argument_value_different:$.id"),
        (fc("get", id=3), hermes(("get", {"id": 3, "x": 1})), 0.0, "argument_keys_different:$"),
        (fc("get", id=3), "<think>x</think>" + hermes(("get", {"id": 3})), 1.0, "match"),
        (fc("find", q="cheap red shoes"), hermes(("find", {"q": "red shoes"})), 1.0, "match"),
        (fc("get", id=3), '<tool_call>{"name": "get"', 0.0, "invalid_action:unclosed_tool_call"),
        (fc("get", id=3), "", 0.0, "invalid_action:empty"),
    ],
)
def test_single_call_table(expected, response, reward, reason):
    got = score(expected, response)
    assert (got.reward, got.reason) == (reward, reason)


def test_text_around_a_correct_call_still_matches():
    got = score(fc("get", id=3), "Let me check." + hermes(("get", {"id": 3})))
    assert got.reward == 1.0


# Parallel calls: expected {a, a, b}; the candidate order does not matter; duplicates count.
E3 = [fc("a", x=1), fc("a", x=1), fc("b", y="z")]


@pytest.mark.parametrize(
    "response, binary, fractional, f1",
    [
        (hermes(("b", {"y": "z"}), ("a", {"x": 1}), ("a", {"x": 1})), 1.0, 1.0, 1.0),
        (hermes(("a", {"x": 1}), ("b", {"y": "z"})), 0.0, 2 / 3, 4 / 5),
        (
            hermes(("a", {"x": 1}), ("a", {"x": 1}), ("a", {"x": 1}), ("b", {"y": "z"})),
            0.0,
            3 / 4,
            6 / 7,
        ),
        (hermes(("a", {"x": 2}), ("b", {"y": "z"})), 0.0, 1 / 3, 2 / 5),
        (hermes(("c", {})), 0.0, 0.0, 0.0),
    ],
)
def test_parallel_modes(response, binary, fractional, f1):
    for mode, want in [("binary", binary), ("fractional", fractional), ("f1", f1)]:
        got = score(E3, response, mode=mode)
        assert got.reward == pytest.approx(want), mode
        assert got.info["n_expected"] == 3


def test_parallel_matching_is_maximum_not_greedy():
    # expected[0] accepts both candidates, expected[1] only the first: greedy in order would
    # pair expected[0] with candidate 0 and strand expected[1]
    expected = [fc("s", q="red shoes for running"), fc("s", q="red shoes")]
    response = hermes(("s", {"q": "red shoes"}), ("s", {"q": "shoes for running today"}))
    got = score(expected, response, threshold=0.2)
    assert got.reward == 1.0
    assert got.info["matched"] == [[0, 1], [1, 0]]


def test_unknown_mode_names_the_known_ones():
    with pytest.raises(KeyError, match="binary, f1, fractional"):
        build_verifier("tool_call", mode="best")
    with pytest.raises(ValueError, match="no parameter thresh"):
        build_verifier("tool_call", thresh=0.2)


TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "book",
            "parameters": {
                "type": "object",
                "properties": {
                    "seats": {"type": "integer"},
                    "cls": {
                        "type": "string",
                        "enum": ["economy", "business"],
                        "default": "economy",
                    },
                    "note": {"type": "string"},
                },
                "required": ["seats"],
            },
        },
    },
)
ST = VerifyState(tools=TOOLS)


def test_schema_options():
    exp = fc("book", seats=2, cls="economy")
    # reference semantics: a numeric string is a different type; an omitted default differs
    assert score(exp, hermes(("book", {"seats": "2", "cls": "economy"})), ST).reward == 0.0
    assert score(exp, hermes(("book", {"seats": 2})), ST).reward == 0.0
    assert (
        score(
            exp, hermes(("book", {"seats": "2", "cls": "economy"})), ST, coerce_numeric_strings=True
        ).reward
        == 1.0
    )
    assert score(exp, hermes(("book", {"seats": 2})), ST, use_defaults=True).reward == 1.0
    assert score(exp, hermes(("book", {"seats": 2, "cls": "Economy "})), ST).reward == 0.0
    assert (
        score(exp, hermes(("book", {"seats": 2, "cls": "Economy "})), ST, fold_enums=True).reward
        == 1.0
    )


def test_validate_schema_rejects_bad_calls():
    exp = fc("book", seats=2, note="window seat please")
    ok = hermes(("book", {"seats": 2, "note": "please a window seat"}))
    assert score(exp, ok, ST, validate_schema=True).reward == 1.0
    # expected data itself may break the schema; the candidate is what gets validated
    bad = score(fc("book", seats=2.5), hermes(("book", {"seats": 2.5})), ST, validate_schema=True)
    assert (bad.reward, bad.reason) == (0.0, "schema_invalid:$.seats: expected integer, got float")
    unknown = score(fc("nope"), hermes(("nope", {})), ST, validate_schema=True)
    assert unknown.reason == "unknown_tool"
    # no tools offered: nothing to validate against, the reference rule alone decides
    assert score(fc("nope"), hermes(("nope", {})), S, validate_schema=True).reward == 1.0


# ---- properties ----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4),
    ),
    max_leaves=12,
)
arguments = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=5)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)


def shuffled_dumps(value, rnd, indent):
    """JSON text of `value` with keys in a random order and random whitespace."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        sep = " " * rnd.randint(0, 2)
        body = ("," + sep).join(
            f"{json.dumps(k)}{sep}:{sep}{shuffled_dumps(v, rnd, indent)}" for k, v in items
        )
        return "{" + sep + body + sep + "}"
    if isinstance(value, list):
        return "[" + ", ".join(shuffled_dumps(v, rnd, indent) for v in value) + "]"
    return json.dumps(value)


@settings(max_examples=150, deadline=None)
@given(name=names, args=arguments)
def test_an_action_verifies_against_itself(name, args):
    action = Action(tool_calls=(ToolCall(name, args),))
    v = build_verifier("tool_call")
    assert v.verify(S, action, action).reward == 1.0
    text = hermes((name, args))
    assert v.verify(S, action, parse_action(text)).reward == 1.0


@settings(max_examples=150, deadline=None)
@given(name=names, args=arguments, rnd=st.randoms(use_true_random=False), n=st.integers(1, 3))
def test_key_order_and_whitespace_never_change_the_reward(name, args, rnd, n):
    expected = parse_action([fc(name, **args)] * n if n > 1 else fc(name, **args))
    blocks = "".join(
        f'<tool_call>\n{{"name": {json.dumps(name)},  "arguments": '
        f"{shuffled_dumps(args, rnd, 0)}}}\n</tool_call>\n"
        for _ in range(n)
    )
    for mode in ("binary", "fractional", "f1"):
        v = build_verifier("tool_call", mode=mode)
        assert v.verify(S, expected, parse_action(blocks)).reward == 1.0


@settings(max_examples=150, deadline=None)
@given(name=names, args=arguments, other=names)
def test_changing_the_name_changes_the_reward(name, args, other):
    if other == name:
        other = name + "x"
    v = build_verifier("tool_call")
    exp = Action(tool_calls=(ToolCall(name, args),))
    assert v.verify(S, exp, Action(tool_calls=(ToolCall(other, args),))).reward == 0.0


@settings(max_examples=150, deadline=None)
@given(
    name=names,
    args=st.dictionaries(st.text(min_size=1, max_size=8), json_scalars, min_size=1, max_size=5),
    data=st.data(),
)
def test_changing_a_value_to_a_different_one_changes_the_reward(name, args, data):
    key = data.draw(st.sampled_from(sorted(args)))
    old = args[key]
    # a replacement that differs under the rule: a different type, or for numbers far away,
    # or for strings a one-word different token
    if isinstance(old, bool) or old is None:
        new = "changed"
    elif isinstance(old, int | float):
        new = old + 1 if abs(old) < 1e9 else -old  # past 2**53, old + 1 may round back to old
    else:
        new = ["not", "a", "string"]
    v = build_verifier("tool_call")
    exp = Action(tool_calls=(ToolCall(name, args),))
    got = v.verify(S, exp, Action(tool_calls=(ToolCall(name, {**args, key: new}),)))
    assert got.reward == 0.0
    assert got.reason.startswith("argument_")


def _mutate(args, rnd):
    """`args` with one top-level value replaced by another drawn value, or unchanged."""
    if not args or rnd.random() < 0.3:
        return args
    key = rnd.choice(sorted(args))
    return {**args, key: rnd.choice([0, 1.5, "x", "two words", None, True, [], {}])}


@settings(max_examples=150, deadline=None)
@given(
    name=names,
    args=arguments,
    rnd=st.randoms(use_true_random=False),
    threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5]),
)
def test_reward_is_invariant_to_key_order_and_json_whitespace(name, args, rnd, threshold):
    other = _mutate(args, rnd)
    v = build_verifier("tool_call", threshold=threshold)
    expected = parse_action(fc(name, **args))
    plain = v.verify(S, expected, Action(tool_calls=(ToolCall(name, other),))).reward
    body = shuffled_dumps(other, rnd, 0)
    text = f'<tool_call>{{"name": {json.dumps(name)}, "arguments": {body}}}</tool_call>'
    assert v.verify(S, expected, parse_action(text)).reward == plain
    reordered_expected = parse_action(
        {"type": "function_call", "name": name, "arguments": shuffled_dumps(args, rnd, 0)}
    )
    assert (
        v.verify(S, reordered_expected, Action(tool_calls=(ToolCall(name, other),))).reward == plain
    )


@settings(max_examples=100, deadline=None)
@given(
    calls=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([{}, {"x": 1}, {"x": 2}])),
        min_size=1,
        max_size=5,
    ),
    cand=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([{}, {"x": 1}, {"x": 2}])),
        min_size=1,
        max_size=5,
    ),
    rnd=st.randoms(use_true_random=False),
)
def test_parallel_reward_ignores_call_order_and_matches_multiset_count(calls, cand, rnd):
    from collections import Counter

    expected = Action(tool_calls=tuple(ToolCall(n, a) for n, a in calls))
    shuffled = list(cand)
    rnd.shuffle(shuffled)
    key = lambda c: (c[0], json.dumps(c[1]))
    # with exact-equality edges, the maximum matching is the multiset intersection
    m = sum((Counter(map(key, calls)) & Counter(map(key, cand))).values())
    for mode, want in [
        ("binary", float(m == len(calls) == len(cand))),
        ("fractional", m / max(len(calls), len(cand))),
        ("f1", 2 * m / (len(calls) + len(cand))),
    ]:
        v = build_verifier("tool_call", mode=mode)
        for order in (cand, shuffled):
            action = Action(tool_calls=tuple(ToolCall(n, a) for n, a in order))
            assert v.verify(S, expected, action).reward == pytest.approx(want)
