"""The paper-claims benchmark: SFT vs PivotRL vs its ablations vs end-to-end RL, same data and
rollout budget, several seeds (benchmarks/paper_claims.py).

    python benchmarks/paper_claims.py                                   # CPU default
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:quick   # minutes
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:gpu     # larger, a GPU
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:smoke   # the tests' run
    python benchmarks/paper_claims.py --config.seeds="(0,1,2,3,4)" --config.workdir=runs/pc5

The shared stages (data, pi_0, extraction, profiling, selection) use the demo's settings
(configs/demo.py) with the overrides below and are cached in `workdir`; so is every finished
run, so an interrupted benchmark resumes where it stopped.
"""

import importlib.util
from pathlib import Path

from ml_collections import config_dict

METHODS = ("sft", "pivotrl", "pivotrl_random", "pivotrl_exact", "e2e_rl")


def _demo_config(variant: str | None) -> config_dict.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        "demo_config", Path(__file__).with_name("demo.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = _demo_config("smoke" if arg == "smoke" else None)
    # The demo's work folder: the shared stages have the demo's settings, so after `make demo`
    # only the method runs remain (and `make demo` reuses what this builds).
    c.workdir = "runs/demo"
    c.results_dir = "docs/results"  # report.md, results.json and the plots
    c.seeds = (0, 1, 2)
    # The shared stages (data, pi_0, profiling, selection) are configs/demo.py's: terminal
    # in-domain on CPU (`gpu` adds tool use).
    c.methods = METHODS
    c.benchmark_row_length = 1024  # GRPO samples are packed into rows of this many tokens
    # Held-out turn acceptance: expert trajectories of evaluation sessions per domain, one
    # greedy action per turn scored by the functional verifier (the turn-level skill).
    c.heldout_trajectories = 64
    # The budget every method gets: `iterations` optimizer steps; RL methods sample
    # prompts_per_step x group_size rollouts per step (turns for the turn-level methods,
    # episodes of several turns for end-to-end RL); SFT takes prompts_per_step trajectories.
    c.budget = config_dict.ConfigDict(
        dict(iterations=16, prompts_per_step=8, group_size=8, eval_every=8, max_new_tokens=48)
    )
    c.rl = config_dict.ConfigDict(
        dict(learning_rate=3e-4, beta=0.0, clip_low=0.2, clip_high=0.2, e2e_prompts_per_step=2)
    )
    c.sft = config_dict.ConfigDict(dict(learning_rate=5e-4))
    c.eval.episodes_per_domain = 256
    c.eval.ood_questions = 256
    c.eval.mid_episodes = 128  # at intermediate checkpoints (in-domain only)
    c.eval.temperature = 0.0
    c.eval.max_new_tokens = 48
    # In-domain gain vs out-of-domain change: extra runs on the first seed, each a method and
    # config overrides (dotted keys of this config); intermediate checkpoints add the
    # "fewer steps" points to every run's curve.
    c.tradeoff = (
        ("pivotrl", "rl.beta=0.05"),
        ("pivotrl", "rl.learning_rate=1e-4"),
        ("pivotrl", "rl.clip_low=0.1,rl.clip_high=0.1"),
        ("sft", "sft.learning_rate=1e-4"),
    )
    if arg == "quick":
        c.workdir = "runs/paper_claims-quick"
        c.results_dir = "runs/paper_claims-quick/results"
        c.seeds = (0,)
        c.base.steps = 300
        c.budget.iterations = 4
        c.budget.eval_every = 2
        c.budget.prompts_per_step = 2
        c.budget.group_size = 4
        c.eval.episodes_per_domain = 32
        c.eval.ood_questions = 32
        c.eval.mid_episodes = 16
        c.heldout_trajectories = 16
        c.tradeoff = (("pivotrl", "rl.beta=0.05"),)
    elif arg == "smoke":  # seconds-scale stages (the demo's smoke settings): the test suite's
        c.workdir = "runs/paper_claims-smoke"
        c.results_dir = "runs/paper_claims-smoke/results"
        c.seeds = (0,)
        c.budget.update(
            dict(iterations=2, prompts_per_step=2, group_size=2, eval_every=1, max_new_tokens=8)
        )
        c.rl.e2e_prompts_per_step = 1
        c.eval.update(dict(episodes_per_domain=2, ood_questions=3, mid_episodes=2))
        c.tradeoff = (("pivotrl", "rl.beta=0.05"),)
        c.heldout_trajectories = 2
        c.benchmark_row_length = 2048
    elif arg == "gpu":
        c.workdir = "runs/paper_claims-gpu"
        c.results_dir = "runs/paper_claims-gpu/results"
        c.domains = ("terminal", "tool_use")
        c.seeds = (0, 1, 2, 3, 4)
        c.base.steps = 6000
        c.base.batch_size = 32
        c.base.length_buckets = (256, 512, 1024, 1536)
        c.budget.iterations = 64
        c.budget.prompts_per_step = 32
        c.benchmark_row_length = 2048
        c.budget.eval_every = 8
        c.eval.episodes_per_domain = 1024
        c.eval.ood_questions = 1024
    elif arg:
        raise ValueError(f"unknown paper_claims variant {arg!r}; known: quick, smoke, gpu")
    return c
