"""The paper-claims benchmark: pi_0, SFT, PivotRL, its ablations and end-to-end RL on one data
set, one pi_0 and one evaluation, several seeds (benchmarks/paper_claims.py).

    python benchmarks/paper_claims.py                                          # CPU default
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:smoke   # the tests' run
    python benchmarks/paper_claims.py --config.seeds="(0,1,2,3,4)" --config.workdir=runs/pc5

Every setting not named here is configs/demo.py's: the data, pi_0, profiling, selection, the
PivotRL and SFT settings and the evaluation, and the shared stages are cached in the demo's
work folder (after `make demo`, only the method runs remain).
"""

import importlib.util
from pathlib import Path

from ml_collections import config_dict

METHODS = ("sft", "pivotrl", "random_turns", "naive_rl", "e2e_rl")


def _demo_config(variant: str | None) -> config_dict.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        "demo_config", Path(__file__).with_name("demo.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = _demo_config("smoke" if arg == "smoke" else None)
    c.results_dir = "docs/results"  # report.md, results.json and the plots
    c.seeds = (0, 1, 2)
    c.methods = METHODS
    # Runs at a time, each a process on its share of the CPUs that takes the next run no other
    # has taken (on 2 cores two one-core runs train ~1.6x faster than one two-core run);
    # `shard` ("I/N") is set for those processes.
    c.jobs = 1
    c.shard = ""
    c.eval_every = 50  # checkpoints (held-out turn acceptance against rollout turns)
    c.e2e_tasks_per_step = 8  # end-to-end RL: tasks x group_size episodes per step
    # Held-out accuracies (points above pi_0) whose rollout-turn cost is reported per method.
    c.accuracy_levels = (5.0, 10.0, 15.0)
    # The in-domain vs out-of-domain trade-off: PivotRL runs on the first seed over learning
    # rate x KL beta (the default settings' run is the sweep's reference point).
    c.sweep = tuple(
        ("pivotrl", f"train.learning_rate={lr},train.beta={beta}")
        for lr in (1e-4, 3e-4, 1e-3)
        for beta in (0.0, 0.1, 0.3)
        if (lr, beta) != (c.train.learning_rate, c.train.beta)
    )
    if arg == "smoke":  # seconds-scale stages (the demo's smoke settings): the test suite's
        c.results_dir = f"{c.workdir}/results"
        c.seeds = (0,)
        c.eval_every = 1
        c.e2e_tasks_per_step = 1
        c.sweep = (("pivotrl", "train.beta=0.05"),)
    elif arg:
        raise ValueError(f"unknown paper_claims variant {arg!r}; known: smoke")
    return c
