"""The paper's claims at small scale: pi_0, SFT, PivotRL, its ablations and end-to-end RL.

    python benchmarks/paper_claims.py                                          # CPU default
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:smoke   # the tests' run
    python benchmarks/paper_claims.py --config.seeds="(0,1,2,3,4)"
    python benchmarks/paper_claims.py --config.jobs=2   # two runs at a time, a core each

One data set, one pi_0 and one evaluation (the demo's: configs/demo.py, whose stages are shared
and cached in `workdir`), several seeds per method:

  sft             SFT from pi_0 on the expert trajectories the pivots come from (learning rate
                  and epochs chosen on a validation split: benchmarks/demo_tuning.py)
  pivotrl         turn-level GRPO on pivots (variance > 0, mean < lambda under pi_0) with the
                  functional verifier
  random_turns    the same on random candidate turns (no pivot filter), functional verifier
  naive_rl        random candidate turns with the strict reward 1[a = a*] (the paper's "naive
                  local RL" row of Table 4)
  e2e_rl          end-to-end multi-turn RL: whole episodes of the training tasks (8 tasks x 8
                  episodes per step), outcome reward, the same GRPO update, for the same number
                  of rollout turns as PivotRL's training

Per run: held-out turn acceptance at every checkpoint (against cumulative rollout turns), and
at the end held-out turn acceptance, in-domain episode success and out-of-domain accuracy, each
per item so that every method is compared with pi_0 on the same items; within-group reward std
and the zero-signal group fraction per iteration; for end-to-end RL, how many steps updated
anything. Reported: means over seeds with 95% t-intervals; the rollout turns each method needs
to reach given held-out accuracies; an lr x beta sweep of PivotRL for the in-domain vs
out-of-domain trade-off. Prints a JSON summary; writes `results_dir`/{results.json, report.md,
acceptance_vs_turns.png, tradeoff.png, signal.png}. Every stage and finished run is cached, so
an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/paper_claims.py"
TURN_LEVEL = ("pivotrl", "random_turns", "naive_rl")


# ---------------------------------------------------------------------------------------------
# Config.


def load(argv: list[str]):
    from pivotrl_jax import config as config_lib

    spec, overrides = DEFAULT_CONFIG, []
    for arg in argv:
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            overrides.append(arg[len("--config.") :])
        else:
            raise SystemExit(f"unknown argument {arg!r} (use --config=... and --config.KEY=VALUE)")
    return config_lib.load_config(spec, overrides)


def with_overrides(c, overrides: str):
    """A copy of `c` with "a.b=1,c.d=2" applied (values as Python literals)."""
    c = copy.deepcopy(c)
    for item in filter(None, overrides.split(",")):
        key, value = item.split("=", 1)
        node = c
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise KeyError(f"sweep override {key!r} is not a config key")
        try:
            node[leaf] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            node[leaf] = value
    return c


def settings_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def run_dir(wd: Path, method: str, seed: int, overrides: str) -> Path:
    slug = overrides.replace("=", "").replace(",", "_").replace(".", "") if overrides else ""
    return wd / "claims" / f"{method}-s{seed}{'-' + slug if slug else ''}"


# ---------------------------------------------------------------------------------------------
# Runs.


def train_run(c, p, method: str, seed: int, out: Path, e2e_steps: int, progress: bool) -> None:
    """The method's training command from pi_0, every checkpoint kept and exported."""
    from pivotrl_jax import demo

    t = c.train
    keep = t.steps // c.eval_every + 2
    if method == "sft":
        sc = copy.deepcopy(c)
        sc.seed = seed
        demo.sft_baseline(sc, _Into(p, out), progress)
        return
    common = {
        "checkpoint__every": c.eval_every,
        "checkpoint__keep": keep,
        "seed": seed,
        "loss__beta": t.beta,
        "optim__learning_rate": t.learning_rate,
    }
    if method == "e2e_rl":
        demo.run_cli(
            [
                "train",
                "--config=configs/train.py:envs,episodes",
                f"--config.model_dir={p.base / 'model'}",
                "--output",
                str(out / "run"),
                f"--config.episodes.domains={tuple(c.domains)}",
                f"--config.episodes.tasks_per_domain={c.data.sft_per_domain}",
                f"--config.episodes.tasks_seed={c.seed + 202}",  # demo.make_data's SFT sessions
                f"--config.episodes.max_turns={c.eval.max_turns}",
                f"--config.train.steps={e2e_steps}",
                f"--config.train.pivots_per_step={c.e2e_tasks_per_step}",
                f"--config.rollout.group_size={t.group_size}",
                f"--config.rollout.max_new_tokens={t.max_new_tokens}",
                f"--config.train.max_prompt_len={2 * t.max_prompt_len}",
                "--config.engine.truncation=left",  # long histories keep their last tokens
                f"--config.train.old_logprobs={t.old_logprobs}",
                f"--config.train.kl_metric={t.beta > 0}",
                *(f"--config.{k.replace('__', '.')}={v}" for k, v in common.items()),
                *([] if progress else ["--config.log.progress=False"]),
            ]
        )
        demo.run_cli(["export", "--run", str(out / "run"), "--output", str(out / "final")])
        return
    pivots = {"pivotrl": p.pivots, "random_turns": p.root / "pivots-all"}.get(method, p.candidates)
    extra = dict(common)
    if method == "naive_rl":
        extra.update(pivots_prefix="candidates", verifier_for_all="exact")
    # `train_pivotrl` also exports the final policy; checkpoints are exported by evaluate_run.
    demo.train_pivotrl(c, p, pivots, out / "run", out / "final", progress, **extra)


class _Into:
    """The demo's paths, with the SFT outputs moved into one run's folder."""

    def __init__(self, p, out: Path):
        self._p, self._out = p, out

    def __getattr__(self, name):
        if name == "sft":
            return self._out / "sft"
        if name == "sft_model":
            return self._out / "final"
        return getattr(self._p, name)


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    by_step = {int(r["step"]): r for r in rows}  # a resumed run may repeat steps: keep the last
    return [by_step[k] for k in sorted(by_step)]


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(d.name) for d in (run / "checkpoints").iterdir() if d.name.isdigit())


def evaluate_run(c, ev, run_root: Path, method: str, progress: bool) -> dict:
    """Held-out turn acceptance of every checkpoint (with cumulative rollout turns and training
    seconds), the final model's full per-item results, and the training-signal summary."""
    from pivotrl_jax import demo

    run = run_root / ("sft" if method == "sft" else "run")
    if method == "sft":
        run = run / "run"
    metrics = read_metrics(run)
    turns = seconds = 0.0
    cum = {}
    for row in metrics:
        turns += row.get("rollout/turns", 0.0)
        seconds += row.get("time/step", 0.0)
        cum[int(row["step"])] = (turns, seconds)
    curve = []
    for step in checkpoint_steps(run):
        folder = run_root / "models" / f"step{step:05d}"
        if not (folder / "config.json").exists():
            demo.run_cli(
                ["export", "--run", str(run), "--step", str(step), "--output", str(folder)]
            )
        rewards = ev.turns(folder, progress)
        t, s = cum.get(step, (turns, seconds))
        curve.append(
            {
                "step": step,
                "turn_acceptance": 100 * sum(rewards) / len(rewards),
                "turns": t,
                "seconds": s,
            }
        )
    final = ev.full(run_root / "final", progress)
    rl_rows = [r for r in metrics if "reward/mean" in r]
    signal = {}
    if rl_rows:
        signal = {
            "group_reward_std_mean": _mean([r["reward/group_std_mean"] for r in rl_rows]),
            "zero_signal_fraction": _mean([r["groups/zero_std_fraction"] for r in rl_rows]),
            "steps": len(rl_rows),
            "steps_that_updated": sum(r["groups/zero_std_fraction"] < 1.0 for r in rl_rows),
            "per_iteration": [
                {
                    "step": int(r["step"]),
                    "group_reward_std": r["reward/group_std_mean"],
                    "zero_signal": r["groups/zero_std_fraction"],
                    "reward": r["reward/mean"],
                }
                for r in rl_rows
            ],
        }
    return {
        "method": method,
        "curve": curve,
        "final": final,
        "rollout_turns": turns,
        "train_seconds": seconds,
        "signal": signal,
    }


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


class Evaluator:
    """The demo's evaluation items (held-out turns, episodes, OOD questions of the kinds pi_0
    answers reliably) and one engine for every model."""

    def __init__(self, c, p):
        from pivotrl_jax import demo
        from pivotrl_jax.envs import generate_tasks
        from pivotrl_jax.envs.domains import verifier_config
        from pivotrl_jax.eval import compare
        from pivotrl_jax.pivots.profile import DomainVerifiers

        self.c = c
        self.cmp = compare.Comparison(p.base / "model")
        e = c.eval
        kinds = json.loads((p.eval / "ood_kinds.json").read_text())
        self.tasks = {
            d: generate_tasks(d, e.episodes_per_domain, e.seed, "eval") for d in c.domains
        }
        self.tasks["ood"] = compare.ood_tasks(e.ood_questions, e.seed, kinds, part="test")
        self.heldout = demo.read_records(p.heldout)
        self.verifiers = DomainVerifiers.from_mappings(verifier_config(tuple(c.domains)), {})

    def turns(self, model: Path, progress: bool) -> list[float]:
        from pivotrl_jax.eval.turns import turn_rewards

        self.cmp.load(model)
        return turn_rewards(
            self.cmp.engine, self.cmp.tok, self.heldout, self.verifiers, self.c.eval.max_new_tokens
        )

    def full(self, model: Path, progress: bool) -> dict:
        return self.cmp.measure(
            model, self.c.eval, self.heldout, self.tasks, self.verifiers, progress
        )

    def close(self) -> None:
        self.cmp.close()


# ---------------------------------------------------------------------------------------------
# Summary (pure).


def in_domain(items: dict) -> list[float]:
    """Per-episode success over every in-domain task (domains concatenated)."""
    return [x for d in sorted(items["episodes"]) for x in items["episodes"][d]]


def pct(values: list[float]) -> float:
    return 100 * sum(values) / len(values) if values else float("nan")


def first_reaching(curve: list[dict], target: float, key: str = "turn_acceptance") -> dict | None:
    """The first curve point whose `key` is >= target (points in step order), or None."""
    for point in curve:
        if point[key] >= target - 1e-9:
            return point
    return None


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Point-wise mean over seeds of curves evaluated at the same steps."""
    out = []
    for points in zip(*curves, strict=True):
        row = {"step": points[0]["step"]}
        for k in ("turn_acceptance", "turns", "seconds"):
            row[k] = sum(p[k] for p in points) / len(points)
        out.append(row)
    return out


# The paper's claims as comparisons of two methods on one metric, seed by seed: (text, method,
# against, metric, claimed sign). "pi_0" is the base policy; metrics are percent of items.
CLAIMS = (
    ("PivotRL's held-out turn acceptance is above SFT's", "pivotrl", "sft", "turns", 1),
    ("PivotRL's in-domain success is above SFT's", "pivotrl", "sft", "in_domain", 1),
    ("PivotRL keeps out-of-domain accuracy (no loss against pi_0)", "pivotrl", "pi_0", "ood", 0),
    ("PivotRL's out-of-domain accuracy is above SFT's", "pivotrl", "sft", "ood", 1),
    (
        "Pivot filtering helps: PivotRL's held-out acceptance is above random candidate turns'",
        "pivotrl",
        "random_turns",
        "turns",
        1,
    ),
    (
        "The functional reward helps: PivotRL's held-out acceptance is above naive local RL's",
        "pivotrl",
        "naive_rl",
        "turns",
        1,
    ),
    (
        "At the same rollout turns PivotRL's in-domain success is at least end-to-end RL's",
        "pivotrl",
        "e2e_rl",
        "in_domain",
        0,
    ),
)


def metric(items: dict, name: str) -> float:
    return pct(in_domain(items) if name == "in_domain" else items[name])


def claims(c, base: dict, runs: dict) -> list[dict]:
    """Each claim of CLAIMS whose methods ran: the per-seed difference (method - against, in
    points) with its 95% t-interval and a verdict. A claimed improvement (sign 1) holds when the
    interval is above 0 and fails when it is below; a claimed absence of loss (sign 0) fails
    when the interval is below 0 and holds otherwise; anything else is not resolved."""
    from pivotrl_jax.eval.stats import mean_ci

    out = []
    for text, a, b, name, sign in CLAIMS:
        if a not in c.methods or (b != "pi_0" and b not in c.methods):
            continue
        diffs = []
        for seed in c.seeds:
            other = base if b == "pi_0" else runs[(b, seed, "")]["final"]
            diffs.append(metric(runs[(a, seed, "")]["final"], name) - metric(other, name))
        m = mean_ci(diffs)
        lo, hi = m["mean"] - m["ci95"], m["mean"] + m["ci95"]
        if hi < 0:
            verdict = "does not hold"
        elif sign == 0 or lo > 0:
            verdict = "holds"
        else:
            verdict = "not resolved"
        out.append(
            {
                "claim": text,
                "difference": m["mean"],
                "ci95": [lo, hi],
                "n": m["n"],
                "verdict": verdict,
            }
        )
    return out


def summarize(c, base: dict, runs: dict, selections: dict, profile_turns: int) -> dict:
    from pivotrl_jax.eval.stats import mean_ci, paired_difference

    base_turns, base_in, base_ood = pct(base["turns"]), pct(in_domain(base)), pct(base["ood"])
    methods = {}
    for method in c.methods:
        main = [runs[(method, s, "")] for s in c.seeds]
        fin = [r["final"] for r in main]
        sig = [r["signal"] for r in main if r["signal"]]
        first = fin[0]
        methods[method] = {
            "turn_acceptance": mean_ci([pct(f["turns"]) for f in fin]),
            "turn_acceptance_change": mean_ci([pct(f["turns"]) - base_turns for f in fin]),
            "turn_acceptance_change_seed0_paired": {
                k: (100 * v if k == "mean" else [100 * x for x in v] if k == "ci95" else v)
                for k, v in paired_difference(first["turns"], base["turns"]).items()
            },
            "in_domain": mean_ci([pct(in_domain(f)) for f in fin]),
            "in_domain_change": mean_ci([pct(in_domain(f)) - base_in for f in fin]),
            "ood": mean_ci([pct(f["ood"]) for f in fin]),
            "ood_change": mean_ci([pct(f["ood"]) - base_ood for f in fin]),
            "rollout_turns": mean_ci([r["rollout_turns"] for r in main])["mean"],
            "train_seconds": mean_ci([r["train_seconds"] for r in main]),
            "group_reward_std": mean_ci([s["group_reward_std_mean"] for s in sig]) if sig else None,
            "zero_signal_fraction": mean_ci([s["zero_signal_fraction"] for s in sig])
            if sig
            else None,
            "steps_that_updated": mean_ci([s["steps_that_updated"] for s in sig])["mean"]
            if sig
            else None,
            "steps": sig[0]["steps"] if sig else None,
            "curve": mean_curve([r["curve"] for r in main]) if main[0]["curve"] else [],
        }
    levels = [base_turns + d for d in c.accuracy_levels]
    for m in methods.values():
        m["turns_to_reach"] = {}
        for level in levels:
            hit = first_reaching(m["curve"], level)
            m["turns_to_reach"][f"{level:.1f}"] = hit["turns"] if hit else None
    sweep = []
    for (method, seed, ov), r in runs.items():
        if not ov or seed != c.seeds[0]:
            continue
        f = r["final"]
        sweep.append(
            {
                "method": method,
                "overrides": ov,
                "turn_acceptance_change": pct(f["turns"]) - base_turns,
                "in_domain_change": pct(in_domain(f)) - base_in,
                "ood_change": pct(f["ood"]) - base_ood,
            }
        )
    for method in c.methods:  # the main settings' first seed, as the sweep's reference point
        f = runs[(method, c.seeds[0], "")]["final"]
        sweep.append(
            {
                "method": method,
                "overrides": "default",
                "turn_acceptance_change": pct(f["turns"]) - base_turns,
                "in_domain_change": pct(in_domain(f)) - base_in,
                "ood_change": pct(f["ood"]) - base_ood,
            }
        )
    return {
        "base": {
            "turn_acceptance": base_turns,
            "in_domain": base_in,
            "ood": base_ood,
            "n": {
                "turns": len(base["turns"]),
                "episodes": len(in_domain(base)),
                "ood": len(base["ood"]),
            },
        },
        "methods": methods,
        "claims": claims(c, base, runs),
        "selections": selections,
        "profile_turns": profile_turns,
        "sweep": sweep,
    }


def _ci(m: dict) -> str:
    return f"{m['mean']:.1f} ± {m['ci95']:.1f}"


def report_markdown(c, summary: dict, command: str, seconds: float) -> str:
    ms, base = summary["methods"], summary["base"]
    n = len(c.seeds)
    t = c.train
    lines = [
        "# Paper claims at small scale",
        "",
        f"Command: `{command}` ({seconds / 60:.0f} min for this invocation; cached stages and "
        "runs are reused, not repeated).",
        "",
        f"Setting: the demo's data and pi_0 (configs/demo.py; in-domain: {', '.join(c.domains)}). "
        f"{n} seeds per method. Turn-level methods: {t.steps} steps x {t.pivots_per_step} "
        f"prompts x {t.group_size} samples; end-to-end RL: {c.e2e_tasks_per_step} tasks x "
        f"{t.group_size} episodes per step for about the same rollout turns. Evaluation: "
        f"{base['n']['turns']} held-out expert turns (greedy action, functional verifier), "
        f"{base['n']['episodes']} in-domain episodes, {base['n']['ood']} out-of-domain "
        "questions of the kinds pi_0 answers reliably; the same items for every model.",
        "",
        f"pi_0: held-out turn acceptance {base['turn_acceptance']:.1f}%, in-domain success "
        f"{base['in_domain']:.1f}%, out-of-domain accuracy {base['ood']:.1f}%.",
        "",
        "## Which of the paper's claims hold here",
        "",
        f"Per-seed differences between two methods ({n} seeds; pi_0 is one model), mean and 95% "
        "t-interval in points. An improvement holds when its interval is above 0; 'no loss' "
        "fails only when its interval is below 0.",
        "",
        "| claim | difference | 95% interval | verdict |",
        "|---|---|---|---|",
        *(
            f"| {k['claim']} | {k['difference']:+.1f} | [{k['ci95'][0]:+.1f}, "
            f"{k['ci95'][1]:+.1f}] | {k['verdict']} |"
            for k in summary["claims"]
        ),
        "",
        "## Methods",
        "",
        "Means over seeds with 95% t-intervals, in percent or points.",
        "",
        "| method | held-out turn acceptance | change vs pi_0 | in-domain success | change "
        "| OOD accuracy | OOD change | rollout turns | train s | group reward std "
        "| zero-signal groups |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in ms.items():
        gs, zs = m["group_reward_std"], m["zero_signal_fraction"]
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _ci(m["turn_acceptance"]),
                    f"{m['turn_acceptance_change']['mean']:+.1f}",
                    _ci(m["in_domain"]),
                    f"{m['in_domain_change']['mean']:+.1f}",
                    _ci(m["ood"]),
                    f"{m['ood_change']['mean']:+.1f} ± {m['ood_change']['ci95']:.1f}",
                    f"{m['rollout_turns']:.0f}",
                    f"{m['train_seconds']['mean']:.0f}",
                    f"{gs['mean']:.3f}" if gs else "-",
                    f"{zs['mean']:.2f}" if zs else "-",
                ]
            )
            + " |"
        )
    levels = list(next(iter(ms.values()))["turns_to_reach"])
    lines += [
        "",
        "Rollout turns (training, mean over seeds) until the held-out turn acceptance first "
        f"reaches each level (checkpoints every {c.eval_every} steps; PivotRL's profiling adds "
        f"{summary['profile_turns']} turns, shared by its runs):",
        "",
        "| method | " + " | ".join(f"{lv}%" for lv in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for name, m in ms.items():
        if name == "sft":
            continue
        cells = [
            f"{v:.0f}" if v is not None else "not reached" for v in m["turns_to_reach"].values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    e2e = ms.get("e2e_rl")
    if e2e and e2e["steps"]:
        lines += [
            "",
            f"End-to-end RL updated the policy at {e2e['steps_that_updated']:.0f} of its "
            f"{e2e['steps']} steps (a step whose every task's episodes share one outcome has no "
            "GRPO signal).",
        ]
    sel = summary["selections"]
    lines += [
        "",
        f"Pivot selection under pi_0 (K = {c.profile.k}, lambda = {c.select.lambda_diff}): "
        f"{sel['kept']} of {sel['candidates']} candidates kept "
        f"({100 * sel['zero_variance_fraction']:.0f}% had zero reward variance).",
        "",
        "## Trade-off: in-domain vs out-of-domain (first seed; PivotRL learning rate x KL beta)",
        "",
        "| method | settings | turn acceptance change | in-domain change | OOD change |",
        "|---|---|---|---|---|",
    ]
    for pt in summary["sweep"]:
        lines.append(
            f"| {pt['method']} | {pt['overrides']} | {pt['turn_acceptance_change']:+.1f} | "
            f"{pt['in_domain_change']:+.1f} | {pt['ood_change']:+.1f} |"
        )
    lines += [
        "",
        "![acceptance vs turns](acceptance_vs_turns.png)",
        "![trade-off](tradeoff.png)",
        "![signal](signal.png)",
        "",
    ]
    return "\n".join(lines)


def plot(summary: dict, runs: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pivotrl_jax import atomic

    def save(fig, name):
        fig.tight_layout()
        with atomic.atomic_open(out / name, "wb") as f:
            fig.savefig(f, format="png")
        plt.close(fig)

    ms, base = summary["methods"], summary["base"]
    colors = {name: f"C{i}" for i, name in enumerate(ms)}  # one colour per method throughout
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for name, m in ms.items():
        if not m["curve"]:
            continue
        acc = [base["turn_acceptance"]] + [p["turn_acceptance"] for p in m["curve"]]
        steps = [0] + [p["step"] for p in m["curve"]]
        axes[1].plot(steps, acc, marker=".", label=name, color=colors[name])
        if name != "sft":
            turns = [0] + [p["turns"] for p in m["curve"]]
            axes[0].plot(turns, acc, marker=".", label=name, color=colors[name])
    axes[0].set_xlabel("cumulative rollout turns (training)")
    axes[1].set_xlabel("optimizer step")
    for ax in axes:
        ax.set_ylabel("held-out turn acceptance (%)")
        ax.legend(fontsize=7)
    save(fig, "acceptance_vs_turns.png")

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    for pt in summary["sweep"]:
        ax.scatter(
            pt["ood_change"], pt["turn_acceptance_change"], color=colors.get(pt["method"], "k")
        )
        ax.annotate(
            f"{pt['method']} {pt['overrides']}",
            (pt["ood_change"], pt["turn_acceptance_change"]),
            fontsize=6,
        )
    ax.axvline(0, color="k", lw=0.5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("out-of-domain change (points)")
    ax.set_ylabel("held-out turn acceptance change (points)")
    save(fig, "tradeoff.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    for name in ms:
        rows = [
            r["signal"]["per_iteration"]
            for (m, _, ov), r in runs.items()
            if m == name and not ov and r["signal"]
        ]
        if not rows:
            continue
        n = min(len(r) for r in rows)
        steps = [p["step"] for p in rows[0][:n]]
        for ax, key in ((axes[0], "zero_signal"), (axes[1], "group_reward_std")):
            ys = [sum(r[i][key] for r in rows) / len(rows) for i in range(n)]
            ax.plot(steps, ys, label=name, color=colors[name], lw=0.8)
    axes[0].set_ylabel("zero-signal group fraction")
    axes[1].set_ylabel("within-group reward std")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    save(fig, "signal.png")


# ---------------------------------------------------------------------------------------------
# Main.


def prepare(c, progress: bool):
    """The demo's shared stages (data, pi_0, pivots, held-out turns, OOD kinds, pi_0's per-item
    results) plus the unfiltered candidate set for the random-turns ablation."""
    from pivotrl_jax import demo

    wd = Path(c.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    st, p = demo.Stages(wd), demo.Paths(wd)
    sel = demo.prepare(c, st, p, progress)
    st.run(
        "select_all",
        {"keep": "all"},
        [wd / "pivots-all"],
        lambda: demo.select(p.profiled, wd / "pivots-all", 1.01, 0, -1.0),
    )
    st.run(
        "heldout",
        {"n": c.eval.heldout_per_domain, "seed": c.eval.seed},
        [p.heldout, p.eval / "heldout.jsonl"],
        lambda: demo.heldout(c, p),
    )
    evals = demo.Evaluations(c, st, p, progress)
    try:
        base = evals.run({"pi_0": p.base / "model"})["pi_0"]
    finally:
        evals.close()
    profile_turns = sum(
        json.loads(f.read_text())["rollouts"] for f in p.profiled.glob("summary-*.json")
    )
    selection = {
        k: sel[k] for k in ("candidates", "kept", "kept_fraction", "zero_variance_fraction")
    }
    return p, base, selection, profile_turns


def e2e_steps(c, base: dict) -> int:
    """End-to-end RL steps for about PivotRL's training rollout turns, from pi_0's mean turns per
    evaluation episode."""
    t = c.train
    budget = t.steps * t.pivots_per_step * t.group_size
    per_step = c.e2e_tasks_per_step * t.group_size * max(base["mean_turns"], 1.0)
    return max(1, math.ceil(budget / per_step))


def main(argv: list[str]) -> dict | None:
    from pivotrl_jax import compile_cache

    c = load(argv)
    with compile_cache.enabled(Path(c.workdir) / ".jax_cache"):
        return _main(c, argv)


def parse_shard(shard: str) -> tuple[int, int]:
    """ "i/n" -> (i, n) with 0 <= i < n; "" -> (0, 1)."""
    if not shard:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise SystemExit(f"--config.shard={shard!r}: expected I/N, e.g. 0/2") from None
    if not 0 <= i < n:
        raise SystemExit(f"--config.shard={shard!r}: need 0 <= I < N")
    return i, n


def take(folder: Path, name: str) -> bool:
    """Whether this process is the first to take `name` (creates folder/name exclusively)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_shards(argv: list[str], jobs: int) -> None:
    """`jobs` processes (`--config.shard=i/jobs`), each on its share of this process's CPUs,
    each taking the next run in order that no other has taken (so a long run does not hold
    back the others); returns when all have finished, raising if one failed."""
    import subprocess

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    procs = []
    for i in range(jobs):
        env = dict(os.environ, PAPER_CLAIMS_CPUS=",".join(map(str, cpus[i::jobs])))
        cmd = [sys.executable, __file__, *argv, f"--config.shard={i}/{jobs}"]
        procs.append(subprocess.Popen(cmd, env=env))
    failed = [i for i, proc in enumerate(procs) if proc.wait() != 0]
    if failed:
        raise SystemExit(f"paper_claims: shard(s) {failed} of {jobs} failed (see their output)")


def _main(c, argv: list[str]) -> dict:
    from pivotrl_jax import atomic

    progress = sys.stderr.isatty()
    t0 = time.perf_counter()
    p, base, selections, profile_turns = prepare(c, progress)
    wd = Path(c.workdir)
    jobs = [(m, s, "") for m in c.methods for s in c.seeds]
    jobs += [(m, c.seeds[0], ov) for m, ov in c.sweep]
    _, shards = parse_shard(c.shard)
    taken = wd / "claims" / ".taken"  # one empty file per run a shard has taken
    if shards == 1 and c.jobs > 1:  # the shared stages are made above, once, before the shards
        shutil.rmtree(taken, ignore_errors=True)
        run_shards(argv, c.jobs)
    runs = {}
    ev = Evaluator(c, p)
    try:
        for i, (method, seed, ov) in enumerate(jobs):
            rc = with_overrides(c, ov)
            out = run_dir(wd, method, seed, ov)
            key = settings_hash(
                method, seed, rc.train.to_dict(), rc.sft.to_dict(), rc.eval.to_dict()
            )
            result_file = out / "result.json"
            if result_file.exists():
                done = json.loads(result_file.read_text())
                if done.get("key") == key:
                    runs[(method, seed, ov)] = done["result"]
                    continue
            if shards > 1 and not take(taken, out.name):
                continue  # another shard runs it
            print(
                f"[paper_claims] {i + 1}/{len(jobs)} {method} seed {seed} {ov}",
                file=sys.stderr,
                flush=True,
            )
            marker = out / "settings.json"
            if out.exists() and (
                not marker.exists() or json.loads(marker.read_text()).get("key") != key
            ):
                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            atomic.write_json(marker, {"key": key})
            train_run(rc, p, method, seed, out, e2e_steps(rc, base), progress)
            result = evaluate_run(rc, ev, out, method, progress)
            atomic.write_json(result_file, {"key": key, "result": result})
            runs[(method, seed, ov)] = result
    finally:
        ev.close()
    if shards > 1:
        return None  # the process that started the shards writes the report
    summary = summarize(c, base, runs, selections, profile_turns)
    seconds = time.perf_counter() - t0
    results = Path(c.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/paper_claims.py", *argv])
    summary.update(seconds=seconds, command=command, config=c.to_dict())
    atomic.write_json(results / "results.json", summary)
    atomic.write_text(results / "report.md", report_markdown(c, summary, command, seconds))
    plot(summary, runs, results)
    return summary


if __name__ == "__main__":
    os.chdir(REPO)
    if os.environ.get("PAPER_CLAIMS_CPUS"):  # a shard's CPUs, set before JAX starts its threads
        os.sched_setaffinity(0, {int(x) for x in os.environ["PAPER_CLAIMS_CPUS"].split(",")})
    out = main(sys.argv[1:])
    if out is None:
        sys.exit(0)
    brief = {
        "seconds": out["seconds"],
        "base": out["base"],
        "methods": {
            k: {
                "turn_acceptance": v["turn_acceptance"],
                "in_domain": v["in_domain"],
                "ood_change": v["ood_change"],
                "rollout_turns": v["rollout_turns"],
            }
            for k, v in out["methods"].items()
        },
    }
    print(json.dumps(brief, indent=1, default=str))
