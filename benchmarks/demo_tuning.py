"""Choose the demo's pi_0 pretraining schedule and the SFT baseline's learning rate and epochs on
a validation split (never on the evaluation items), and print the grid as one JSON object.

    python benchmarks/demo_tuning.py base   # pi_0 variants (configs/demo.py `base` overrides)
    python benchmarks/demo_tuning.py sft    # SFT from the demo's pi_0: lr x epochs
    python benchmarks/demo_tuning.py sft --config.workdir=runs/demo2 --config.seed=1

Validation items are expert trajectories of evaluation sessions that the demo's evaluation never
uses (sessions drawn with another seed, minus every session of the evaluation set), extracted into
candidate turns; each model is scored by greedy held-out turn acceptance on them (the demo's
primary metric) and, for pi_0, by greedy success on validation episodes. The chosen values are
the ones written in configs/demo.py; docs/demo.md records the grid.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]

BASE_GRID = (
    "",
    "base.steps=3000",
    "base.hidden_size=128",
    "base.hidden_size=128,base.steps=3000",
)
SFT_GRID = [(lr, epochs) for lr in (1e-4, 3e-4, 1e-3) for epochs in (1.0, 2.0)]


def validation_split(c, p, n: int) -> Path:
    """Candidate turns of `n` expert trajectories per domain on evaluation sessions that are not
    in the evaluation set (cached in workdir/validation)."""
    from pivotrl_jax import atomic, demo
    from pivotrl_jax.envs import generate_tasks
    from pivotrl_jax.envs.sft import trajectory

    out = p.root / "validation"
    if (out / "candidates").exists():
        return out / "candidates"
    e = c.eval
    rows = []
    for d in c.domains:
        test = {t.session for t in generate_tasks(d, e.episodes_per_domain, e.seed, "eval")}
        test |= {t.session for t in generate_tasks(d, e.heldout_per_domain, e.seed, "eval")}
        pool = generate_tasks(d, n + len(test), e.seed + 17, "eval")
        rows += [trajectory(t, e.seed) for t in pool if t.session not in test][:n]
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_jsonl(out / "trajectories.jsonl", rows)
    demo.extract(
        c, p, out / "candidates", demo.domain_verifiers(c.domains), out / "trajectories.jsonl"
    )
    return out / "candidates"


def acceptance(cmp, model: Path, cands: list[dict], verifiers, e) -> float:
    from pivotrl_jax.eval.turns import turn_rewards

    cmp.load(model)
    rewards = turn_rewards(cmp.engine, cmp.tok, cands, verifiers, e.max_new_tokens)
    return 100 * sum(rewards) / len(rewards)


def main(argv: list[str]) -> dict:
    from pivotrl_jax import config as config_lib
    from pivotrl_jax import demo
    from pivotrl_jax.envs.domains import verifier_config
    from pivotrl_jax.eval.compare import Comparison
    from pivotrl_jax.pivots.profile import DomainVerifiers

    what, overrides = argv[0], [a[len("--config.") :] for a in argv[1:]]
    if what not in ("base", "sft"):
        raise SystemExit("usage: demo_tuning.py base|sft [--config.KEY=VALUE ...]")
    c = config_lib.load_config("configs/demo.py", overrides)
    wd = Path(c.workdir)
    p = demo.Paths(wd)
    st = demo.Stages(wd)
    demo.prepare(c, st, p, progress=False) if what == "sft" else demo.make_data(c, p.data)
    verifiers = DomainVerifiers.from_mappings(verifier_config(tuple(c.domains)), {})
    grid = []
    if what == "sft":
        cands = demo.read_records(validation_split(c, p, 150))
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
