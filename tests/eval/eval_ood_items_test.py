"""The out-of-domain evaluation asks distinct questions: a kind with few possible questions yields
all of them once, never the same question counted twice."""

import pytest

from pivotrl_jax.eval.compare import ood_tasks

WORD_KINDS = ["count_letter", "reverse_word", "sort_letters"]  # the `word_kind_questions` fixture's


def test_a_small_question_space_is_returned_whole_and_once(word_kind_questions):
    space = word_kind_questions
    tasks = ood_tasks(512, seed=1, kinds=WORD_KINDS)
    questions = [t.question for t in tasks]
    assert len(questions) == len(set(questions))
    assert set(questions) == space
    assert len(tasks) == len(space) < 512
    for t in tasks:
        assert t.kind in WORD_KINDS


def test_a_large_space_gives_n_distinct_questions_and_respects_exclude():
    tasks = ood_tasks(300, seed=5, kinds=["add", "last_digit"])
    questions = [t.question for t in tasks]
    assert len(questions) == len(set(questions)) == 300
    again = ood_tasks(300, seed=5, kinds=["add", "last_digit"])
    assert [t.question for t in again] == questions  # deterministic
    held = set(questions[:100])
    rest = ood_tasks(300, seed=5, kinds=["add", "last_digit"], exclude=held)
    assert len(rest) == 300 and not held & {t.question for t in rest}
    assert ood_tasks(10, seed=5, kinds=[]) == []


def test_test_and_validation_parts_split_every_kind_by_question_text(word_kind_questions):
    from pivotrl_jax.envs import generate_tasks
    from pivotrl_jax.eval.compare import ood_part

    whole = ood_tasks(2000, seed=2, kinds=["add", "parity", *WORD_KINDS])
    test = ood_tasks(2000, seed=2, kinds=["add", "parity", *WORD_KINDS], part="test")
    val = ood_tasks(2000, seed=2, kinds=["add", "parity", *WORD_KINDS], part="validation")
    tq, vq = {t.question for t in test}, {t.question for t in val}
    assert not tq & vq
    assert all(ood_part(q) == "test" for q in tq) and all(ood_part(q) == "validation" for q in vq)
    # the word kinds' closed space is split, not given whole to either part
    words = word_kind_questions
    assert (words & tq) | (words & vq) == words
    assert 0.2 < len(words & vq) / len(words) < 0.45
    assert len(tq) == len(vq) == len(whole) == 2000
    questions = {t.question for t in generate_tasks("ood", 4000, seed=3, split="eval")}
    share = sum(ood_part(q) == "validation" for q in questions) / len(questions)
    assert 0.28 < share < 0.39, share  # one in VALIDATION_SHARE = 3


def test_ood_by_kind_counts_each_kind_with_its_paired_change():
    from pivotrl_jax.eval.compare import ood_by_kind

    kinds = ["a", "b", "a", "b", "a", "c"]
    results = {
        "pi_0": {"ood": [1, 1, 1, 0, 0, 1]},
        "rl": {"ood": [1, 0, 0, 0, 1, 1]},
    }
    out = ood_by_kind(results, kinds)
    assert sorted(out) == ["a", "b", "c"]
    assert out["a"]["pi_0"]["n"] == 3 and abs(out["a"]["pi_0"]["mean"] - 200 / 3) < 1e-9
    assert abs(out["a"]["rl"]["mean"] - 200 / 3) < 1e-9
    # kind a: differences 0, -1, +1 -> mean 0; kind b: -1, 0 -> mean -50 points
    assert out["a"]["rl"]["delta_vs_pi_0"]["mean"] == 0.0
    assert out["b"]["rl"]["delta_vs_pi_0"]["mean"] == -50.0
    assert out["c"]["rl"]["mean"] == 100.0
    assert "delta_vs_pi_0" not in out["a"]["pi_0"]
    with pytest.raises(ValueError, match="rl: 5 ood results, 6 kinds"):
        ood_by_kind({"pi_0": results["pi_0"], "rl": {"ood": [1] * 5}}, kinds)
