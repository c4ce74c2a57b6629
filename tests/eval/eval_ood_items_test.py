"""The out-of-domain evaluation asks distinct questions: a kind with few possible questions yields
all of them once, never the same question counted twice."""

from pivotrl_jax.envs.ood import WORDS
from pivotrl_jax.eval.compare import ood_tasks

WORD_KINDS = ["count_letter", "reverse_word", "sort_letters"]


def _word_kind_questions() -> set[str]:
    """Every question the three word kinds can ask, enumerated from the word list."""
    out = set()
    for w in WORDS:
        out |= {f"Reverse the word {w}.", f"Write {w} backwards."}
        out.add(f"Write the letters of {w} in alphabetical order.")
        for letter in set(w) | {"e", "a"}:
            out.add(f"How many times does the letter {letter} appear in {w}?")
    return out


def test_a_small_question_space_is_returned_whole_and_once():
    space = _word_kind_questions()
    tasks = ood_tasks(512, seed=1, kinds=WORD_KINDS)
    questions = [t.question for t in tasks]
    assert len(questions) == len(set(questions))
    assert set(questions) == space
    assert len(tasks) == len(space) < 512
    for t in tasks:
        assert t.kind in WORD_KINDS


def test_a_large_space_gives_n_distinct_questions_and_respects_exclude():
    tasks = ood_tasks(300, seed=5, kinds=["add", "subtract"])
    questions = [t.question for t in tasks]
    assert len(questions) == len(set(questions)) == 300
    again = ood_tasks(300, seed=5, kinds=["add", "subtract"])
    assert [t.question for t in again] == questions  # deterministic
    held = set(questions[:100])
    rest = ood_tasks(300, seed=5, kinds=["add", "subtract"], exclude=held)
    assert len(rest) == 300 and not held & {t.question for t in rest}
    assert ood_tasks(10, seed=5, kinds=[]) == []
