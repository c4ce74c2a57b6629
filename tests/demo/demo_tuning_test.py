"""benchmarks/demo_tuning.py: the validation questions for out-of-domain forgetting are of the
evaluated kinds but never evaluation questions; the learning-rate rule keeps to the
out-of-domain tolerance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("demo_tuning", REPO / "benchmarks/demo_tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validation_ood_is_disjoint_from_evaluation_and_probe(word_kind_questions):
    from pivotrl_jax import config as config_lib
    from pivotrl_jax.eval.compare import ood_tasks

    dt = _module()
    c = config_lib.load_config("configs/demo.py")
    kinds = ["add", "reverse_word"]
    val = dt.validation_ood(c, kinds, 200)
    questions = [t.question for t in val]
    assert len(questions) == len(set(questions)) == 200
    assert {t.kind for t in val} == set(kinds)  # the small kind is represented too
    e = c.eval
    test = {t.question for t in ood_tasks(e.ood_questions, e.seed, kinds, part="test")}
    assert len(test) == e.ood_questions
    assert not set(questions) & test
    setting = (c.train.learning_rate, c.train.beta, c.select.lambda_diff)
    assert setting in dt.RL_GRID  # the demo's setting is a point
    # The word kinds' questions are split: some validate, the others are evaluated.
    words = ["count_letter", "reverse_word", "sort_letters"]
    wval = {t.question for t in dt.validation_ood(c, words, 200)}
    wtest = {t.question for t in ood_tasks(e.ood_questions, e.seed, words, part="test")}
    assert wval and wtest and not wval & wtest and wval | wtest == word_kind_questions


def test_rl_choice_keeps_out_of_domain_accuracy_then_maximises_acceptance():
    dt = _module()
    base = {"acceptance": 20.0, "ood": 90.0}
    grid = [
        {"learning_rate": 1e-3, "acceptance": 35.0, "ood": 80.0},  # best in domain, forgets
        {"learning_rate": 5e-4, "acceptance": 31.0, "ood": 88.5},  # within 2 points
        {"learning_rate": 2e-4, "acceptance": 28.0, "ood": 91.0},
    ]
    assert dt.choose_rl(base, grid)["learning_rate"] == 5e-4
    assert dt.choose_rl(base, grid, tolerance=10.0)["learning_rate"] == 1e-3
    forgetting = [dict(g, ood=g["ood"] - 20) for g in grid]  # none within 2 points
    assert dt.choose_rl(base, forgetting)["learning_rate"] == 2e-4
    assert dt.choose_rl({"acceptance": 20.0, "ood": None}, grid)["learning_rate"] == 1e-3
