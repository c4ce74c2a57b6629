"""benchmarks/demo_tuning.py: the validation questions for out-of-domain forgetting never share
a kind with the evaluation's questions nor a text with the probe's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("demo_tuning", REPO / "benchmarks/demo_tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validation_ood_is_disjoint_from_evaluation_and_probe():
    from pivotrl_jax import config as config_lib
    from pivotrl_jax.envs.ood import KINDS
    from pivotrl_jax.eval.compare import ood_tasks

    dt = _module()
    c = config_lib.load_config("configs/demo.py")
    kinds = ["count_letter", "reverse_word", "sort_letters"]
    val = dt.validation_ood(c, kinds, 200)
    questions = [t.question for t in val]
    assert len(questions) == len(set(questions)) == 200
    assert {t.kind for t in val} == set(KINDS.names()) - set(kinds)
    e = c.eval
    test = {t.question for t in ood_tasks(e.ood_questions, e.seed, kinds)}
    probe = {t.question for t in ood_tasks(e.ood_probe, seed=e.seed + 1000)}
    assert not set(questions) & (test | probe)
    assert (c.train.learning_rate, c.train.beta) in dt.RL_GRID  # the demo's setting is a point
