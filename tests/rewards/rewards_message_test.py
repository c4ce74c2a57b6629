"""The `message` verifier (facts, not wording) and `turn_kind` routing, against hand-made cases."""

import pytest

from pivotrl_jax.rewards import VerifyState, build_verifier, parse_action
from pivotrl_jax.rewards.message import extract_facts, states


@pytest.mark.parametrize(
    "fact, text, expected",
    [
        ("7", "There are 7 lines.", True),
        ("7", "7.0 lines", True),
        ("7", "seven lines", True),
        ("7", "$7", True),
        ("7", "17 lines", False),
        ("7", "7a", False),
        ("plan.txt", "It is docs/old/plan.txt.", True),
        ("plan.txt", "It is ~/docs/plan.txt", True),
        ("plan.txt", "It is plan.txt.bak", False),
        ("docs/plan.txt", "see /home/user/docs/plan.txt", True),
        ("docs/plan.txt", "see ./docs/plan.txt!", True),
        ("docs/plan.txt", "see plan.txt", False),
        ("archive", "Moved into ./archive/", True),
        ("archive", "Moved into archives", False),
        ("shipped", "Your order is SHIPPED.", True),
        ("yes", "Yep, it is.", True),
        ("21 king street", "Your address is now 21 King Street, Lakeside.", True),
        ("21 king street", "Your address is now 21 Queen Street.", False),
        ("mode=fast", "app.conf now ends with mode=fast.", True),
    ],
)
def test_states(fact, text, expected):
    assert states(fact, text) is expected


def test_extracted_facts_are_numbers_paths_names_quotes_and_a_leading_yes_no():
    assert extract_facts("No. logs/app.log has 12 lines; it says 'all good'.") == {
        "no",
        "logs/app.log",
        "app.log",
        "12",
        "all good",
    }
    assert extract_facts("There is no such file.") == set()


def test_message_verifier():
    v = build_verifier("message")
    state = VerifyState()
    expected = parse_action("There are 9 lines in data/users.csv.")

    def reward(text, verifier=v):
        return verifier.verify(state, expected, parse_action(text)).reward

    assert reward("data/users.csv: nine lines") == 1.0
    assert reward("9 lines in users.csv") == 0.0  # the path is a fact the expected message states
    assert reward("There are 8 lines in data/users.csv.") == 0.0
    call = {"type": "function_call", "name": "f", "arguments": "{}"}
    assert reward(call) == 0.0
    given = build_verifier("message", facts=("9",))
    assert reward("Nine.", given) == 1.0 and reward("Ten.", given) == 0.0


def test_turn_kind_routes_by_the_expected_action():
    v = build_verifier(
        "turn_kind",
        message={"name": "message"},
        tool_calls={"name": "tool_call", "params": {"threshold": 0.1}},
    )
    state = VerifyState()
    call = lambda **a: parse_action({"type": "function_call", "name": "f", "arguments": a})
    said = parse_action("It costs 12 dollars.")
    assert v.verify(state, said, parse_action("12 dollars")).reward == 1.0
    assert v.verify(state, said, call(x=1)).info["reason"] == "wrong_kind:tool_calls"
    assert v.verify(state, call(x=1), call(x=1)).reward == 1.0
    assert v.verify(state, call(x=1), call(x=2)).reward == 0.0
    assert v.verify(state, call(x=1), said).reward == 0.0
    with pytest.raises(ValueError, match="turn_kind message"):
        build_verifier("turn_kind", message={"verifier": "message"})


@pytest.mark.parametrize(
    "facts, text, expected",
    [
        (["7"], "There are 7 lines.", True),
        (["7"], "notes.txt has seven lines.", True),
        (["7"], "7 lines. Or 8. Or 9.", False),  # guesses, not an answer
        (["7"], "The answer is 7. I wrote 8 to tables.", False),
        (["7"], "I wrote 11111111 lines and 7.", False),
        (["3", "35"], "The total of your 3 orders is 35 dollars.", True),
        (["35"], "The total of your 3 orders is 35 dollars.", False),
        (["notes.txt"], "Moved notes.txt into 2024/.", True),  # no number asked: not checked
        (["7"], "There are 17 lines.", False),
    ],
)
def test_answers_needs_the_facts_and_no_other_number(facts, text, expected):
    from pivotrl_jax.rewards.message import answers

    assert answers(facts, text) is expected


def test_message_verifier_rejects_a_list_of_numbers():
    v = build_verifier("message")
    expected = parse_action({"role": "assistant", "content": "There are 12 lines."})
    state = VerifyState()
    ok = v.verify(state, expected, parse_action("It has 12 lines."))
    guess = v.verify(state, expected, parse_action("It has 12 lines, or 13, or 14."))
    assert (ok.reward, guess.reward, guess.reason) == (1.0, 0.0, "other_numbers")
