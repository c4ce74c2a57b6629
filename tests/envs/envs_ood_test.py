"""OOD questions: answers checked against independent computations; the exact-match scorer."""

import re

import pytest

from pivotrl_jax.envs import generate_tasks, run_episode
from pivotrl_jax.envs.ood import extract_answer, score


def _reference(question: str) -> str:
    """Answer the question from its text alone."""
    if m := re.fullmatch(r"What is (\d+) \+ (\d+)\?", question):
        return str(int(m[1]) + int(m[2]))
    if m := re.fullmatch(r"What is the (first|last) letter of (\w+)\?", question):
        return m[2][0] if m[1] == "first" else m[2][-1]
    if m := re.fullmatch(r"Does (\w+) contain the letter (\w)\?", question):
        return "yes" if any(ch == m[2] for ch in m[1]) else "no"
    if m := re.fullmatch(r"Which comes first in alphabetical order, (\w+) or (\w+)\?", question):
        return m[1] if [ord(ch) for ch in m[1]] < [ord(ch) for ch in m[2]] else m[2]
    if m := re.fullmatch(r"(?:Reverse the word (\w+)\.|Write (\w+) backwards\.)", question):
        return "".join(reversed(m[1] or m[2]))
    if m := re.fullmatch(r"Write the letters of (\w+) in alphabetical order\.", question):
        letters = list(m[1])
        for i in range(len(letters)):  # insertion sort
            j = i
            while j and letters[j - 1] > letters[j]:
                letters[j - 1], letters[j] = letters[j], letters[j - 1]
                j -= 1
        return "".join(letters)
    m = re.fullmatch(r"How many times does the letter (\w) appear in (\w+)\?", question)
    assert m, question
    return str(sum(ch == m[1] for ch in m[2]))


def test_answers_match_an_independent_reading_of_the_question():
    tasks = generate_tasks("ood", 400, seed=0)
    assert {t.kind for t in tasks} == {
        "add",
        "reverse_word",
        "sort_letters",
        "count_letter",
        "first_letter",
        "last_letter",
        "contains_letter",
        "alphabetical_first",
    }
    for t in tasks:
        assert t.answer == _reference(t.question)
        assert not t.answer.startswith("-")
    # "yes" and "no" equally likely: a constant answer does not pass the 80% kind threshold
    contains = [
        t.answer for t in generate_tasks("ood", 4000, seed=1) if t.kind == "contains_letter"
    ]
    assert 0.4 < contains.count("yes") / len(contains) < 0.6


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("405", "405"),
        ("The answer is 405.", "405"),
        ("answer: 405", "405"),
        ("<think>400 + 5</think>\n405\n", "405"),
        ("Let me add.\n\n405.", "405"),
        ("  PMAL ", "pmal"),
        ("4050", "4050"),
        ("", ""),
        ("<think>unfinished", ""),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_score_is_exact_match():
    task = next(t for t in generate_tasks("ood", 50, seed=0) if t.kind == "add")
    assert score(task, task.answer) == 1.0
    assert score(task, f"The answer is {task.answer}.") == 1.0
    assert score(task, task.answer + "0") == 0.0
    assert score(task, f"{task.answer} is the answer") == 0.0
    assert score(task, f"{task.answer}\nno wait") == 0.0


def test_ood_episode_is_one_turn():
    task = generate_tasks("ood", 1, seed=3)[0]
    right = run_episode(task, lambda m, t: f"<think>easy</think>{task.answer}")
    wrong = run_episode(task, lambda m, t: "I do not know.")
    assert (right.success, right.turns, wrong.success) == (True, 1, False)
    assert [m["role"] for m in right.messages] == ["system", "user", "assistant"]


def test_expert_answers_after_a_lead_in():
    """The expert's reply never starts with the answer (the first token is the one in-domain RL
    trains; envs/ood.py `expert`), and it scores 1 on every kind."""
    from pivotrl_jax.envs.ood import expert

    tasks = generate_tasks("ood", 200, seed=5)
    assert len({t.kind for t in tasks}) == 8
    for t in tasks:
        for seed in (0, 1):
            reply = expert(t, seed)([], [])["content"]
            assert reply == f"The answer is {t.answer}."
            assert score(t, reply) == 1.0


def test_word_questions_fill_the_evaluation():
    """One word per initial letter (which of two comes first is their first letters' order), and
    the test part of the question space holds the evaluation's 512 distinct questions of the
    word kinds the demo's pi_0 answered at least 80% of the time on validation questions
    (`runs/demo/eval/ood_kinds.json`); the validation part is disjoint from it."""
    from pivotrl_jax.envs.ood import WORDS
    from pivotrl_jax.eval import compare

    assert len(WORDS) == len({w[0] for w in WORDS}) == 26
    kinds = ["alphabetical_first", "count_letter", "first_letter", "last_letter"]
    kinds += ["reverse_word", "sort_letters"]
    test = compare.ood_tasks(512, seed=1, kinds=kinds, part="test")
    validation = compare.ood_tasks(512, seed=1, kinds=kinds, part="validation")
    assert len({t.question for t in test}) == 512
    assert {t.kind for t in test} == set(kinds)
    assert 150 < len(validation) < 512  # a third of the space: every distinct question there
    assert not {t.question for t in test} & {t.question for t in validation}
    for t in test:
        if t.kind == "alphabetical_first":
            a, b = re.fullmatch(r".*order, (\w+) or (\w+)\?", t.question).groups()
            assert t.answer == (a if a[0] < b[0] else b)
