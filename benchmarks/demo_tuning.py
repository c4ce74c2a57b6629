"""Choose the demo's pi_0 pretraining schedule, the SFT baseline's learning rate and epochs and
PivotRL's KL coefficient on a validation split (never on the evaluation items), and print the grid
as one JSON object.

    python benchmarks/demo_tuning.py base   # pi_0 variants (configs/demo.py `base` overrides)
    python benchmarks/demo_tuning.py sft    # SFT from the demo's pi_0: lr x epochs
    python benchmarks/demo_tuning.py rl     # PivotRL from pi_0: lr x beta (x lambda_diff)
    python benchmarks/demo_tuning.py rl --only=1e-3:0.1   # train and score one grid point
    python benchmarks/demo_tuning.py rl --only=3e-4:0.3:1.0   # ... with pivots of lambda_diff 1.0
    python benchmarks/demo_tuning.py sft --config.workdir=runs/demo2 --config.seed=1

Validation items are expert trajectories of evaluation sessions that the demo's evaluation never
uses (sessions drawn with another seed, minus every session of the evaluation set), extracted into
candidate turns; each model is scored by greedy held-out turn acceptance on them (the demo's
primary metric) and, for pi_0, by greedy success on validation episodes. The chosen values are
the ones written in configs/demo.py; docs/demo.md records the grid.

`rl` trains PivotRL over learning rate x KL beta, and at two of those points the pivot filter's
lambda_diff (`RL_GRID`), and scores each point on validation
turns and on validation out-of-domain questions: questions of the kinds the demo evaluates (the
ones pi_0 answers reliably) from the validation part of the question space
(`compare.ood_part`: a hash of the question's text puts one question in three there), never an
evaluation question. The rule, fixed before the grid runs: among the points whose out-of-domain
validation accuracy is at most `OOD_TOLERANCE` points below pi_0's, the one with the highest
validation acceptance; when no point qualifies, the one that loses the least out-of-domain
accuracy. The rule needs at least `MIN_OOD_VALIDATION` such questions; with fewer it falls back to
the highest validation acceptance and the result says so. Each grid point is a cached run
(workdir/tuning/rl-PI0-lr*-beta*[-lambda*]/, PI0 naming the pi_0 and pivots it started from);
`--only=LR:BETA[:LAMBDA]` computes one, so that points can run in parallel processes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]

BASE_GRID = (
    "",
    "base.steps=1500",
    "base.steps=6000",
    "base.model.hidden_size=192,base.model.intermediate_size=384",
)
SFT_GRID = [(lr, epochs) for lr in (1e-4, 3e-4, 1e-3) for epochs in (1.0, 2.0)]
RL_GRID = (  # (learning rate, KL beta, the pivot filter's lambda_diff)
    (2e-4, 0.1, 0.6),
    (3e-4, 0.1, 0.6),
    (3e-4, 0.3, 0.6),
    (5e-4, 0.1, 0.6),
    (1e-3, 0.1, 0.6),
    (5e-4, 0.3, 0.6),
    (5e-4, 1.0, 0.6),
    # lambda_diff 0.8 keeps the easier turns too (mean reward 0.6-0.8), 1.0 every turn with
    # mixed outcomes
    (3e-4, 0.3, 0.8),
    (3e-4, 0.3, 1.0),
    (5e-4, 0.1, 0.8),
    (5e-4, 0.1, 1.0),
)
VALIDATION_TRAJECTORIES = {"sft": 150, "rl": 400}
OOD_TOLERANCE = 2.0  # points of out-of-domain validation accuracy a chosen point may lose
MIN_OOD_VALIDATION = 60  # questions the out-of-domain rule needs (a question is 1.7 points at 60)


def validation_split(c, p, n: int) -> Path:
    """Candidate turns of `n` expert trajectories per domain on evaluation sessions that are not
    in the evaluation set (cached in workdir/validation). Built in a folder of this process's own
    and renamed into place when complete, so grid points started in parallel never read one
    another's half-written split."""
    from pivotrl_jax import atomic, demo
    from pivotrl_jax.envs import generate_tasks
    from pivotrl_jax.envs.sft import trajectory

    out = p.root / ("validation" if n == 150 else f"validation-{n}")
    if (out / "candidates").exists():
        return out / "candidates"
    e = c.eval
    rows = []
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in c.domains:
        test = {t.session for t in generate_tasks(d, e.episodes_per_domain, e.seed, "eval")}
        test |= {t.session for t in generate_tasks(d, e.heldout_per_domain, e.seed, "eval")}
        pool = generate_tasks(d, n + len(test), e.seed + 17, "eval")
        rows += [trajectory(t, e.seed) for t in pool if t.session not in test][:n]
    tmp.mkdir(parents=True)
    atomic.write_jsonl(tmp / "trajectories.jsonl", rows)
    demo.extract(
        c, p, tmp / "candidates", demo.domain_verifiers(c.domains), tmp / "trajectories.jsonl"
    )
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished the same split first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "candidates"


def acceptance(cmp, model: Path, cands: list[dict], verifiers, e) -> float:
    from pivotrl_jax.eval.turns import turn_rewards

    cmp.load(model)
    rewards = turn_rewards(cmp.engine, cmp.tok, cands, verifiers, e.max_new_tokens)
    return 100 * sum(rewards) / len(rewards)


def validation_ood(c, kinds: list[str], n: int) -> list:
    """Up to `n` distinct out-of-domain questions of the evaluated `kinds` from the validation
    part of the question space (where the probe's questions come from too), never evaluation
    questions: forgetting measured away from the test items."""
    from pivotrl_jax.eval import compare

    return compare.ood_tasks(n, c.eval.seed + 3000, kinds, part="validation")


def choose_rl(base: dict, grid: list[dict], tolerance: float = OOD_TOLERANCE) -> dict:
    """The grid point with the highest validation acceptance among those whose out-of-domain
    validation accuracy is at least pi_0's minus `tolerance` points; when none is, the one
    with the highest out-of-domain accuracy (ties: acceptance). Without out-of-domain scores
    (`base["ood"]` None), the highest acceptance."""
    if base.get("ood") is None:
        return max(grid, key=lambda g: g["acceptance"])
    kept = [g for g in grid if g["ood"] >= base["ood"] - tolerance]
    if kept:
        return max(kept, key=lambda g: g["acceptance"])
    return max(grid, key=lambda g: (g["ood"], g["acceptance"]))


def _point_name(lr: float, beta: float, lambda_diff: float) -> str:
    return f"lr{lr:g}-beta{beta:g}-lambda{lambda_diff:g}"


def rl_point(
    c, p, tag: str, lr: float, beta: float, lambda_diff: float, overrides: list[str]
) -> Path:
    """PivotRL from the demo's pi_0 with learning rate `lr` and KL coefficient `beta` on the
    pivots `lambda_diff` selects from the demo's profile (the demo's own pivots at its
    lambda_diff); the exported policy (the demo's own run when those are the demo's settings)."""
    from pivotrl_jax import config as config_lib
    from pivotrl_jax import demo

    own = (lr, beta, lambda_diff) == (c.train.learning_rate, c.train.beta, c.select.lambda_diff)
    if own and (p.final / "config.json").exists():
        return p.final
    tc = config_lib.load_config("configs/demo.py", overrides)
    tc.train.learning_rate, tc.train.beta = lr, beta
    tp = demo.Paths(Path(c.workdir) / "tuning" / f"rl-{tag}-{_point_name(lr, beta, lambda_diff)}")
    if not (tp.final / "config.json").exists():
        tp.root.mkdir(parents=True, exist_ok=True)
        pivots = p.pivots
        if lambda_diff != c.select.lambda_diff:
            pivots = tp.pivots
            if not (pivots / "select_report.json").exists():
                sl = c.select
                demo.select(p.profiled, pivots, lambda_diff, sl.budget, sl.min_variance)
        shutil.rmtree(tp.train, ignore_errors=True)
        demo.train_pivotrl(tc, p, pivots, tp.train, tp.final, progress=False)
    return tp.final


def score_rl(cmp, c, model: Path, cands, ood, verifiers, path: Path) -> dict:
    """Validation acceptance and out-of-domain accuracy of `model` (cached in `path`)."""
    from pivotrl_jax import atomic

    if path.exists():
        return json.loads(path.read_text())
    r = cmp.measure(model, c.eval, cands, {"ood": ood} if ood else {}, verifiers, progress=False)
    row = {
        "model": str(model),
        "acceptance": 100 * sum(r["turns"]) / len(r["turns"]),
        "ood": 100 * sum(r["ood"]) / len(r["ood"]) if r.get("ood") else None,
        "n_turns": len(r["turns"]),
        "n_ood": len(r.get("ood") or []),
    }
    atomic.write_json(path, row)
    return row


def tune_rl(c, p, st, overrides: list[str], only: tuple | None, verifiers) -> dict:
    from pivotrl_jax import demo

    wd = Path(c.workdir)
    tag = st.chain[:12]  # the pi_0 and pivots the grid starts from
    scores = wd / "tuning" / f"rl-{tag}-scores"  # a scored point is not trained or scored again
    cands = demo.read_records(validation_split(c, p, VALIDATION_TRAJECTORIES["rl"]))
    evals = demo.Evaluations(c, st, p, progress=False)  # its engine scores every model
    try:
        ood = validation_ood(c, evals.ood_kinds(), c.eval.ood_questions)
        if len(ood) < MIN_OOD_VALIDATION:
            ood = []  # too few to choose on; the rule falls back to acceptance (reported)
        base = score_rl(evals.cmp, c, p.base / "model", cands, ood, verifiers, scores / "pi_0.json")
        grid = []
        for lr, beta, lam in RL_GRID if only is None else (only,):
            path = scores / f"{_point_name(lr, beta, lam)}.json"
            model = None if path.exists() else rl_point(c, p, tag, lr, beta, lam, overrides)
            row = score_rl(evals.cmp, c, model, cands, ood, verifiers, path)
            grid.append({"learning_rate": lr, "beta": beta, "lambda_diff": lam, **row})
    finally:
        evals.close()
    result = {
        "what": "rl",
        "pi_0": base,
        "grid": grid,
        "ood_rule": (
            f"applied: {len(ood)} validation questions, tolerance {OOD_TOLERANCE:g} points"
            if ood
            else f"not applied: fewer than {MIN_OOD_VALIDATION} validation questions of the "
            "evaluated kinds"
        ),
    }
    if only is None:
        result["best"] = choose_rl(base, grid)
    return result


def main(argv: list[str]) -> dict:
    from pivotrl_jax import compile_cache
    from pivotrl_jax import config as config_lib

    what, rest = (argv[0] if argv else ""), argv[1:]
    only = [
        tuple(float(x) for x in a.split("=", 1)[1].split(":"))
        for a in rest
        if a.startswith("--only=")
    ]
    overrides = [a[len("--config.") :] for a in rest if a.startswith("--config.")]
    if what not in ("base", "sft", "rl") or len(overrides) + len(only) != len(rest):
        raise SystemExit(
            "usage: demo_tuning.py base|sft|rl [--only=LR:BETA[:LAMBDA] (rl)] "
            "[--config.KEY=VALUE ...]"
        )
    c = config_lib.load_config("configs/demo.py", overrides)
    with compile_cache.enabled(Path(c.workdir) / ".jax_cache"):  # the demo's compiled programs
        return _main(c, what, overrides, only)


def _main(c, what: str, overrides: list[str], only: list[tuple]) -> dict:
    from pivotrl_jax import config as config_lib
    from pivotrl_jax import demo
    from pivotrl_jax.envs.domains import verifier_config
    from pivotrl_jax.eval.compare import Comparison
    from pivotrl_jax.pivots.profile import DomainVerifiers

    wd = Path(c.workdir)
    p = demo.Paths(wd)
    st = demo.Stages(wd)
    demo.prepare(c, st, p, progress=False) if what != "base" else demo.make_data(c, p.data)
    verifiers = DomainVerifiers.from_mappings(verifier_config(tuple(c.domains)), {})
    if what == "rl":
        one = (*only[0], c.select.lambda_diff)[:3] if only else None  # LR:BETA[:LAMBDA]
        return tune_rl(c, p, st, overrides, one, verifiers)
    grid = []
    if what == "sft":
        cands = demo.read_records(validation_split(c, p, VALIDATION_TRAJECTORIES["sft"]))
        cmp = Comparison(p.base / "model")
        base = acceptance(cmp, p.base / "model", cands, verifiers, c.eval)
        for lr, epochs in SFT_GRID:
            tc = config_lib.load_config("configs/demo.py", overrides)
            tc.sft.learning_rate, tc.sft.epochs = lr, epochs
            tp = demo.Paths(wd / "tuning" / f"sft-lr{lr:g}-ep{epochs:g}")
            tp.root.mkdir(parents=True, exist_ok=True)
            if not (tp.sft_model / "config.json").exists():
                demo.sft_baseline(tc, _sharing(p, tp), progress=False)
            grid.append(
                {
                    "learning_rate": lr,
                    "epochs": epochs,
                    "acceptance": acceptance(cmp, tp.sft_model, cands, verifiers, c.eval),
                }
            )
        best = max(grid, key=lambda g: g["acceptance"])
        result = {"what": "sft", "pi_0_acceptance": base, "grid": grid, "best": best}
    else:
        cmp = None
        for ov in BASE_GRID:
            tc = config_lib.load_config(
                "configs/demo.py", [*overrides, *filter(None, ov.split(","))]
            )
            tp = demo.Paths(
                wd / "tuning" / f"base-{ov.replace('=', '').replace(',', '_') or 'default'}"
            )
            tp.root.mkdir(parents=True, exist_ok=True)
            tst = demo.Stages(tp.root)
            tst.run("data", {}, [tp.data], lambda tc=tc, tp=tp: demo.make_data(tc, tp.data))
            tst.run(
                "base",
                config_lib.to_dict(tc.base),
                [tp.base],
                lambda tc=tc, tp=tp: demo.build_base(tc, tp, progress=False),
            )
            cands = demo.read_records(validation_split(tc, tp, 150))
            one = Comparison(tp.base / "model")  # widths differ: an engine per variant
            try:
                score = acceptance(one, tp.base / "model", cands, verifiers, c.eval)
            finally:
                one.close()
            grid.append(
                {
                    "overrides": ov or "(configs/demo.py)",
                    "acceptance": score,
                    "pretrain_seconds": tst.seconds.get("base"),
                }
            )
        result = {"what": "base", "grid": grid}
    if cmp is not None:
        cmp.close()
    return result


def _sharing(p, tp):
    """Paths whose data/base are the demo's and whose sft outputs are the tuning run's."""
    return _Shared(p, tp)


class _Shared:
    def __init__(self, p, tp):
        self._p, self._tp = p, tp

    def __getattr__(self, name):
        return getattr(self._tp if name in ("sft", "sft_model") else self._p, name)


if __name__ == "__main__":
    os.chdir(REPO)
    print(json.dumps(main(sys.argv[1:]), indent=1))
