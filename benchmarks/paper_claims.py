"""The paper's claims at small scale: SFT vs PivotRL vs its ablations vs end-to-end RL.

    python benchmarks/paper_claims.py                                         # CPU default
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:quick  # minutes
    python benchmarks/paper_claims.py --config=configs/paper_claims.py:gpu    # a GPU

Same data (the demo's synthetic domains: pi_0's pretraining mix, 64 clean expert trajectories
per domain), same pi_0 and the same budget of optimizer steps for every method:

  sft             whole-trajectory SFT on the expert trajectories (loss on assistant turns)
  pivotrl         turn-level GRPO on pivots (variance > 0, mean < lambda under pi_0),
                  functional verifier
  pivotrl_random  the same on random candidate turns (no filter)
  pivotrl_exact   pivots profiled and trained with the exact-match reward 1[a = a*]
  e2e_rl          end-to-end multi-turn RL: whole episodes, outcome reward, the same GRPO

Measured per method and seed: in-domain episode success and out-of-domain accuracy (final and
at every `eval_every` steps), cumulative rollout turns and training wall-clock, within-group
reward std and the zero-signal (zero-variance) group fraction over training. Reported: means
with 95% t-intervals over seeds, the turns and seconds each method needs to reach end-to-end
RL's final accuracy, and the in-domain-gain vs out-of-domain-change trade-off over KL,
learning rate, clip range and steps (`tradeoff` runs on the first seed plus every checkpoint).

Prints the summary as one JSON object; writes `results_dir`/{results.json, report.md,
success_vs_turns.png, tradeoff.png, signal.png}. Stages and finished runs are cached in
`workdir`: a rerun with the same settings reuses them, an interrupted one resumes.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/paper_claims.py"
PIVOT_METHODS = ("pivotrl", "pivotrl_random", "pivotrl_exact")
# Two-sided 95% Student t quantiles by degrees of freedom (1..10); 1.96 beyond.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


# ---------------------------------------------------------------------------------------------
# Statistics (pure).


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and 95% t-interval half-width over seeds: t_{0.975, n-1} * s / sqrt(n), s with
    ddof 1 (half-width 0 for one value)."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    m = sum(values) / n
    if n == 1:
        return {"mean": m, "ci95": 0.0, "n": 1}
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    t = T95[n - 2] if n - 1 <= len(T95) else 1.96
    return {"mean": m, "ci95": t * s / math.sqrt(n), "n": n}


def first_reaching(curve: list[dict], target: float, key: str = "in_domain") -> dict | None:
    """The first curve point whose `key` is >= target (points in step order), or None."""
    for point in curve:
        if point[key] >= target - 1e-12:
            return point
    return None


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Point-wise mean over seeds of curves evaluated at the same steps."""
    out = []
    for points in zip(*curves, strict=True):
        row = {"step": points[0]["step"]}
        for k in ("in_domain", "ood", "turns", "seconds", "turn_acceptance"):
            if all(k in p for p in points):
                row[k] = sum(p[k] for p in points) / len(points)
        out.append(row)
    return out


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
    return config_lib.load_config(spec, overrides), spec, overrides


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
            raise KeyError(f"tradeoff override {key!r} is not a config key")
        try:
            node[leaf] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            node[leaf] = value
    return c


def settings_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Runs.


def run_dir(wd: Path, method: str, seed: int, overrides: str) -> Path:
    slug = overrides.replace("=", "").replace(",", "_").replace(".", "") if overrides else ""
    return wd / "runs" / f"{method}-s{seed}{'-' + slug if slug else ''}"


def train_run(c, p, method: str, seed: int, out: Path, progress: bool) -> None:
    """The method's training command, checkpointing every `eval_every` steps (all kept)."""
    from pivotrl_jax.demo import run_cli

    b, r = c.budget, c.rl
    common = [
        f"--config.model_dir={p.base / 'model'}",
        f"--config.seed={seed}",
        f"--config.checkpoint.every={b.eval_every}",
        f"--config.checkpoint.keep={b.iterations // b.eval_every + 1}",
        "--output",
        str(out),
        *([] if progress else ["--config.log.progress=False"]),
    ]
    if method == "sft":
        run_cli(
            [
                "sft",
                "--config=configs/train.py:sft",
                f"--config.trajectories={c.workdir}/sft_traj",
                "--config.sft.prefix=trajectories",
                "--config.train.pack=True",
                f"--config.sft.steps={b.iterations}",
                f"--config.sft.batch_size={b.prompts_per_step}",
                f"--config.sft.length_buckets={tuple(c.base.length_buckets)}",
                f"--config.optim.learning_rate={c.sft.learning_rate}",
                *common,
            ]
        )
        return
    rl = [
        f"--config.train.steps={b.iterations}",
        f"--config.rollout.group_size={b.group_size}",
        f"--config.rollout.max_new_tokens={b.max_new_tokens}",
        f"--config.optim.learning_rate={r.learning_rate}",
        f"--config.loss.beta={r.beta}",
        f"--config.loss.clip_low={r.clip_low}",
        f"--config.loss.clip_high={r.clip_high}",
        "--config.train.micro_batches=2",
        # Samples packed into rows of one length (few shapes to compile), pi_old = the engine's
        # logprobs (one update per batch), KL to pi_0 measured only when it is in the loss.
        "--config.train.pack=True",
        "--config.train.old_logprobs=engine",
        f"--config.train.kl_metric={r.beta > 0}",
        *common,
    ]
    if method == "e2e_rl":
        run_cli(
            [
                "train",
                "--config=configs/train.py:envs,episodes",
                f"--config.episodes.domains={tuple(c.domains)}",
                f"--config.episodes.tasks_per_domain={c.data.sft_per_domain}",
                f"--config.episodes.tasks_seed={c.seed + 202}",  # demo.make_data's SFT sessions
                f"--config.episodes.max_turns={c.eval.max_turns}",
                f"--config.train.pivots_per_step={r.e2e_prompts_per_step}",
                f"--config.train.max_prompt_len={2 * max(c.base.length_buckets)}",
                "--config.engine.truncation=left",  # long histories keep their last tokens
                f"--config.train.length_buckets=({2 * c.benchmark_row_length},)",
                *rl,
            ]
        )
        return
    pivots = {"pivotrl": p.pivots, "pivotrl_random": p.root / "pivots-all"}.get(
        method, p.root / "pivots-exact"
    )
    run_cli(
        [
            "train",
            "--config=configs/train.py:envs",
            f"--config.pivots={pivots}",
            f"--config.train.pivots_per_step={b.prompts_per_step}",
            f"--config.train.max_prompt_len={max(c.base.length_buckets)}",
            f"--config.train.length_buckets=({c.benchmark_row_length},)",
            *(["--config.verifier_for_all=exact"] if method == "pivotrl_exact" else []),
            *rl,
        ]
    )


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    by_step = {int(r["step"]): r for r in rows}  # a resumed run may repeat steps: keep the last
    return [by_step[k] for k in sorted(by_step)]


def in_domain(ev: dict, domains) -> float:
    return sum(ev[d]["success"] for d in domains) / len(domains)


def evaluate_run(c, evaluator, run: Path, method: str, progress: bool) -> dict:
    """Export every checkpoint and evaluate it; the curve over steps with cumulative turns and
    training seconds, the final full evaluation, and the training-signal summary."""
    from pivotrl_jax.demo import run_cli

    b, e = c.budget, c.eval
    metrics = read_metrics(run)
    turns = seconds = 0.0
    cum = {}
    for row in metrics:
        turns += row.get("rollout/turns", 0.0)
        seconds += row.get("time/step", 0.0)
        cum[int(row["step"])] = (turns, seconds)
    curve = []
    final = None
    for step in eval_steps(b):
        folder = run / "models" / f"step{step:05d}"
        if not (folder / "config.json").exists():
            run_cli(["export", "--run", str(run), "--step", str(step), "--output", str(folder)])
        last = step == b.iterations
        n_ep = e.episodes_per_domain if last else e.mid_episodes
        ev = evaluator(folder, n_ep, e.ood_questions, progress)
        if last:
            final = ev
        t, s = cum.get(step, (turns, seconds))
        curve.append(
            {
                "step": step,
                "in_domain": in_domain(ev, c.domains),
                "ood": ev["ood"]["success"],
                "turns": t,
                "seconds": s,
                "episodes": n_ep,
            }
        )
    rl_rows = [r for r in metrics if "reward/mean" in r]
    signal = {}
    if rl_rows:
        signal = {
            "reward_mean_first": rl_rows[0]["reward/mean"],
            "reward_mean_last": rl_rows[-1]["reward/mean"],
            "group_reward_std_mean": sum(r["reward/group_std_mean"] for r in rl_rows)
            / len(rl_rows),
            "zero_signal_fraction": sum(r["groups/zero_std_fraction"] for r in rl_rows)
            / len(rl_rows),
            "per_iteration": [
                {
                    "step": int(r["step"]),
                    "group_reward_std": r["reward/group_std_mean"],
                    "zero_signal": r["groups/zero_std_fraction"],
                    "kl": r.get("kl/mean"),
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


def eval_steps(b) -> list[int]:
    """The evaluated checkpoints: every `eval_every` steps and the last."""
    return sorted({*range(b.eval_every, b.iterations + 1, b.eval_every), b.iterations})


def untrained(c, base_eval: dict, why: str) -> dict:
    """A method that could not train: pi_0's numbers at every step, no rollouts."""
    point = {"in_domain": in_domain(base_eval, c.domains), "ood": base_eval["ood"]["success"]}
    return {
        "method": "untrained",
        "skipped": why,
        "curve": [{"step": k, **point, "turns": 0.0, "seconds": 0.0} for k in eval_steps(c.budget)],
        "final": base_eval,
        "rollout_turns": 0.0,
        "train_seconds": 0.0,
        "signal": {},
    }


class Evaluator:
    """One in-process engine for every evaluation: weights swapped in per model folder."""

    def __init__(self, c, base_model: Path):
        from pivotrl_jax.demo import open_eval_engine

        self.c = c
        self.engine, self.tok = open_eval_engine(base_model)
        self.version = 0
        self.scorer = None  # the functional verifiers, built at the first turn_acceptance

    def __call__(self, folder: Path, episodes: int, ood: int, progress: bool) -> dict:
        from pivotrl_jax.demo import evaluate

        self.load(folder)
        return evaluate(self.engine, self.tok, self.c.domains, self.c.eval, episodes, ood, progress)

    def load(self, folder: Path) -> None:
        self.version += 1
        self.engine.update_weights(str(folder), self.version)

    def turn_acceptance(self, folder: Path, candidates: list[dict]) -> float:
        """Mean functional-verifier reward of one greedy action at each held-out turn (expert
        trajectories of evaluation sessions): the turn-level skill local RL trains."""
        from pivotrl_jax.envs.domains import verifier_config
        from pivotrl_jax.pivots.profile import DomainVerifiers, ProfileConfig, profile_chunk
        from pivotrl_jax.rollout.text import completion_text

        self.load(folder)
        if self.scorer is None:
            self.scorer = DomainVerifiers.from_mappings(verifier_config(tuple(self.c.domains)), {})
        scorer = self.scorer
        cfg = ProfileConfig(
            k=1, temperature=0.0, max_new_tokens=self.c.eval.max_new_tokens, candidates_per_call=64
        )
        stop = (self.tok.eos_token_id,)
        rewards = []
        for start in range(0, len(candidates), cfg.candidates_per_call):
            recs, _ = profile_chunk(
                candidates[start : start + cfg.candidates_per_call],
                self.engine,
                lambda ids: completion_text(self.tok, ids, stop),
                scorer,
                cfg,
                start,
            )
            rewards += [r["profile"]["mean"] for r in recs]
        return sum(rewards) / len(rewards)

    def close(self) -> None:
        self.engine.close()


# ---------------------------------------------------------------------------------------------
# Shared stages.


def prepare(c, progress: bool):
    """The demo's data / pi_0 / extract / profile / select stages, plus the ablations' sets:
    every candidate (no filter), the exact-match profile and its pivots, SFT records."""
    from pivotrl_jax import atomic
    from pivotrl_jax.demo import (
        Paths,
        Stages,
        extract,
        profile,
        select,
        write_trajectory_records,
    )
    from pivotrl_jax.demo import (
        prepare as demo_prepare,
    )

    wd = Path(c.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    st = Stages(wd)
    p = Paths(wd)
    demo_prepare(c, st, p, progress)
    sl = c.select
    st.run(
        "select_all",
        {"keep": "all"},
        [wd / "pivots-all"],
        lambda: select(p.profiled, wd / "pivots-all", 1.01, 0, -1.0),
    )
    exact = ",".join(f"{d}=exact" for d in c.domains)
    st.run(
        "extract_exact",
        {"verifiers": exact},
        [wd / "candidates-exact"],
        lambda: extract(c, p, wd / "candidates-exact", exact),
    )
    st.run(
        "profile_exact",
        {},
        [wd / "profiled-exact"],
        lambda: profile(c, p, wd / "candidates-exact", wd / "profiled-exact", "", progress),
    )
    st.run(
        "select_exact",
        {},
        [wd / "pivots-exact"],
        lambda: select(
            wd / "profiled-exact", wd / "pivots-exact", sl.lambda_diff, sl.budget, sl.min_variance
        ),
    )
    st.run(
        "sft_records",
        {},
        [wd / "sft_traj"],
        lambda: write_trajectory_records(
            p.base / "model", p.data / "sft.jsonl", wd / "sft_traj", max(c.base.length_buckets)
        ),
    )
    st.run(
        "heldout",
        {"n": c.heldout_trajectories, "seed": c.eval.seed, "domains": c.domains},
        [wd / "heldout.jsonl", wd / "heldout"],
        lambda: heldout_candidates(c, p, wd),
    )
    selections = {}
    for name, folder in (("pivotrl", p.pivots), ("pivotrl_exact", wd / "pivots-exact")):
        rep = json.loads((folder / "select_report.json").read_text())
        selections[name] = {
            k: rep[k] for k in ("candidates", "kept", "kept_fraction", "zero_variance_fraction")
        }
    profile_turns = sum(
        json.loads(f.read_text())["rollouts"] for f in p.profiled.glob("summary-*.json")
    )
    atomic.write_json(wd / "selections.json", selections)
    return p, st, selections, profile_turns


def heldout_candidates(c, p, wd: Path) -> None:
    """Expert trajectories of evaluation sessions, extracted into candidate turns."""
    from pivotrl_jax import atomic
    from pivotrl_jax.demo import domain_verifiers, extract
    from pivotrl_jax.envs import generate_tasks
    from pivotrl_jax.envs.sft import trajectory

    rows = [
        trajectory(task, c.eval.seed)
        for d in c.domains
        for task in generate_tasks(d, c.heldout_trajectories, c.eval.seed, "eval")
    ]
    atomic.write_jsonl(wd / "heldout.jsonl", rows)
    extract(c, p, wd / "heldout", domain_verifiers(c.domains), wd / "heldout.jsonl")


def read_heldout(wd: Path) -> list[dict]:
    from pivotrl_jax.data import records as records_io

    return list(records_io.read_records(wd / "heldout", prefix="candidates"))


def add_turn_acceptance(evaluator, run: Path, result: dict, heldout: list[dict]) -> bool:
    """Held-out turn acceptance at every evaluated step (computed once; False if present)."""
    if all("turn_acceptance" in pt for pt in result["curve"]):
        return False
    for pt in result["curve"]:
        folder = run / "models" / f"step{pt['step']:05d}"
        pt["turn_acceptance"] = evaluator.turn_acceptance(folder, heldout)
    return True


# ---------------------------------------------------------------------------------------------
# Report.


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def summarize(c, base_eval: dict, runs: dict, selections: dict, profile_turns: int) -> dict:
    base_in, base_ood = in_domain(base_eval, c.domains), base_eval["ood"]["success"]
    nan = float("nan")
    methods = {}
    for method in c.methods:
        main = [runs[(method, s, "")] for s in c.seeds]
        fin_in = [in_domain(r["final"], c.domains) for r in main]
        fin_ood = [r["final"]["ood"]["success"] for r in main]
        sig = [r["signal"] for r in main if r["signal"]]
        methods[method] = {
            "in_domain": mean_ci(fin_in),
            "in_domain_gain": mean_ci([v - base_in for v in fin_in]),
            "per_domain": {d: mean_ci([r["final"][d]["success"] for r in main]) for d in c.domains},
            "ood": mean_ci(fin_ood),
            "turn_acceptance": mean_ci([r["curve"][-1].get("turn_acceptance", nan) for r in main]),
            "ood_change": mean_ci([v - base_ood for v in fin_ood]),
            "rollout_turns": mean_ci([r["rollout_turns"] for r in main])["mean"],
            "train_seconds": mean_ci([r["train_seconds"] for r in main]),
            "group_reward_std": mean_ci([s["group_reward_std_mean"] for s in sig]) if sig else None,
            "zero_signal_fraction": mean_ci([s["zero_signal_fraction"] for s in sig])
            if sig
            else None,
            "curve": mean_curve([r["curve"] for r in main]),
            "skipped": main[0].get("skipped"),
        }
    target = None
    if "e2e_rl" in methods and methods["e2e_rl"]["in_domain"]["mean"] > base_in:
        target = methods["e2e_rl"]["in_domain"]["mean"]
        for m in methods.values():
            hit = first_reaching(m["curve"], target)
            m["to_match_e2e"] = (
                {"step": hit["step"], "turns": hit["turns"], "seconds": hit["seconds"]}
                if hit
                else None
            )
    tradeoff = []
    for (method, seed, ov), r in runs.items():
        if seed != c.seeds[0]:
            continue
        tradeoff.append(
            {
                "method": method,
                "overrides": ov or "default",
                "points": [
                    {
                        "step": pt["step"],
                        "in_domain_gain": pt["in_domain"] - base_in,
                        "ood_change": pt["ood"] - base_ood,
                    }
                    for pt in r["curve"]
                ],
            }
        )
    return {
        "base": {
            "in_domain": base_in,
            "ood": base_ood,
            "turn_acceptance": base_eval.get("turn_acceptance", nan),
            "eval": base_eval,
        },
        "methods": methods,
        "match_target_in_domain": target,
        "selections": selections,
        "profile_turns": profile_turns,
        "tradeoff": tradeoff,
    }


def report_markdown(c, summary: dict, command: str, seconds: float) -> str:
    ms, base = summary["methods"], summary["base"]
    n = len(c.seeds)
    lines = [
        "# Paper claims at small scale",
        "",
        f"Command: `{command}`",
        "",
        f"Domains: in-domain {', '.join(c.domains)}; out-of-domain questions. {n} seeds; "
        f"{c.budget.iterations} optimizer steps per method; RL methods sample "
        f"{c.budget.prompts_per_step} prompts x {c.budget.group_size} per step "
        f"(end-to-end RL: {c.rl.e2e_prompts_per_step} tasks x {c.budget.group_size} episodes). "
        f"Evaluation: {c.eval.episodes_per_domain} episodes per domain and "
        f"{c.eval.ood_questions} questions, temperature {c.eval.temperature}. "
        f"Wall-clock of this invocation: {seconds / 60:.1f} min (stages and runs that earlier "
        "invocations finished are reused, not repeated).",
        "",
        f"pi_0: in-domain success {pct(base['in_domain'])}%, held-out turn acceptance "
        f"{pct(base['turn_acceptance'])}% ({c.heldout_trajectories} expert trajectories of "
        f"evaluation sessions per domain, one greedy action per turn, functional verifier), "
        f"out-of-domain accuracy {pct(base['ood'])}%.",
        "",
        "Means over seeds with 95% t-intervals (percentage points).",
        "",
        "| method | in-domain success | change vs pi_0 | held-out turn acceptance "
        "| OOD accuracy | OOD change | rollout turns | turns to match e2e RL | train s "
        "| group reward std | zero-signal groups |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in ms.items():
        match = m.get("to_match_e2e")
        gs, zs = m["group_reward_std"], m["zero_signal_fraction"]
        lines.append(
            "| "
            + " | ".join(
                [
                    name + (f" (not trained: {m['skipped']})" if m.get("skipped") else ""),
                    f"{pct(m['in_domain']['mean'])} ± {pct(m['in_domain']['ci95'])}",
                    f"{100 * m['in_domain_gain']['mean']:+.1f}",
                    f"{pct(m['turn_acceptance']['mean'])} ± {pct(m['turn_acceptance']['ci95'])}",
                    f"{pct(m['ood']['mean'])} ± {pct(m['ood']['ci95'])}",
                    f"{100 * m['ood_change']['mean']:+.1f} ± {pct(m['ood_change']['ci95'])}",
                    f"{m['rollout_turns']:.0f}",
                    "n/a (e2e RL did not improve on pi_0)"
                    if "to_match_e2e" not in m
                    else (
                        f"{match['turns']:.0f} (step {match['step']})" if match else "not reached"
                    ),
                    f"{m['train_seconds']['mean']:.0f}",
                    f"{gs['mean']:.3f}" if gs else "-",
                    f"{zs['mean']:.2f}" if zs else "-",
                ]
            )
            + " |"
        )
    sel = summary["selections"]
    lines += [
        "",
        f"Pivot selection under pi_0 (K = {c.profile.k}, lambda = {c.select.lambda_diff}; "
        f"{summary['profile_turns']} profiling turns, shared by every seed): functional "
        f"verifier {sel['pivotrl']['kept']} of {sel['pivotrl']['candidates']} candidates kept "
        f"({pct(sel['pivotrl']['zero_variance_fraction'])}% zero variance); exact match "
        f"{sel['pivotrl_exact']['kept']} kept "
        f"({pct(sel['pivotrl_exact']['zero_variance_fraction'])}% zero variance).",
        "",
        "## Trade-off: in-domain gain vs out-of-domain change (first seed)",
        "",
        "| method | settings | step | in-domain gain | OOD change |",
        "|---|---|---|---|---|",
    ]
    for run in summary["tradeoff"]:
        for pt in run["points"]:
            lines.append(
                f"| {run['method']} | {run['overrides']} | {pt['step']} | "
                f"{100 * pt['in_domain_gain']:+.1f} | {100 * pt['ood_change']:+.1f} |"
            )
    lines += [
        "",
        "![success vs turns](success_vs_turns.png)",
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
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), dpi=100)
    for name, m in ms.items():
        steps = [0] + [p["step"] for p in m["curve"]]
        succ = [100 * base["in_domain"]] + [100 * p["in_domain"] for p in m["curve"]]
        turns = [0] + [p["turns"] for p in m["curve"]]
        axes[1].plot(steps, succ, marker=".", label=name, color=colors[name])
        acc = [base.get("turn_acceptance")] + [p.get("turn_acceptance") for p in m["curve"]]
        if None not in acc:
            axes[2].plot(steps, [100 * a for a in acc], marker=".", label=name, color=colors[name])
        if name != "sft":
            axes[0].plot(turns, succ, marker=".", label=name, color=colors[name])
        else:
            axes[0].axhline(succ[-1], ls="--", color=colors[name], label="sft (final)")
    axes[0].set_xlabel("cumulative rollout turns")
    axes[1].set_xlabel("optimizer step")
    axes[2].set_xlabel("optimizer step")
    for ax in axes[:2]:
        ax.set_ylabel("in-domain success (%)")
    axes[2].set_ylabel("held-out turn acceptance (%)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    save(fig, "success_vs_turns.png")

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
    for run in summary["tradeoff"]:
        xs = [0.0] + [100 * p["ood_change"] for p in run["points"]]
        ys = [0.0] + [100 * p["in_domain_gain"] for p in run["points"]]
        ax.plot(xs, ys, marker="o", ms=3, label=f"{run['method']} {run['overrides']}")
    ax.axvline(0, color="k", lw=0.5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("out-of-domain change (pp)")
    ax.set_ylabel("in-domain gain (pp)")
    ax.legend(fontsize=6)
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
        steps = [p["step"] for p in rows[0]]
        for ax, key in ((axes[0], "zero_signal"), (axes[1], "group_reward_std")):
            ys = [sum(r[i][key] for r in rows) / len(rows) for i in range(len(steps))]
            ax.plot(steps, ys, marker=".", label=name, color=colors[name])
    axes[0].set_ylabel("zero-signal group fraction")
    axes[1].set_ylabel("within-group reward std")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    save(fig, "signal.png")


# ---------------------------------------------------------------------------------------------
# Main.


def main(argv: list[str]) -> dict:
    from pivotrl_jax import atomic, compile_cache

    c = load(argv)[0]
    compile_cache.enable(Path(c.workdir) / ".jax_cache")
    progress = sys.stderr.isatty()
    t0 = time.perf_counter()
    p, _, selections, profile_turns = prepare(c, progress)
    wd = Path(c.workdir)
    evaluator = Evaluator(c, p.base / "model")
    try:
        base_file = wd / "eval_base.json"
        key = settings_hash(c.eval.to_dict(), c.domains)
        cached = json.loads(base_file.read_text()) if base_file.exists() else {}
        if cached.get("key") != key:
            ev = evaluator(
                p.base / "model", c.eval.episodes_per_domain, c.eval.ood_questions, progress
            )
            cached = {"key": key, "eval": ev}
            atomic.write_json(base_file, cached)
        base_eval = cached["eval"]
        jobs = [(m, s, "") for m in c.methods for s in c.seeds]
        jobs += [(m, c.seeds[0], ov) for m, ov in c.tradeoff]
        runs = {}
        for i, (method, seed, ov) in enumerate(jobs):
            rc = with_overrides(c, ov)
            out = run_dir(wd, method, seed, ov)
            result_file = out / "result.json"
            key = settings_hash(
                method,
                seed,
                rc.budget.to_dict(),
                rc.rl.to_dict(),
                rc.sft.to_dict(),
                rc.eval.to_dict(),
            )
            if result_file.exists():
                done = json.loads(result_file.read_text())
                if done.get("key") == key:
                    runs[(method, seed, ov)] = done["result"]
                    continue
            print(
                f"[paper_claims] {i + 1}/{len(jobs)} {method} seed {seed} {ov}",
                file=sys.stderr,
                flush=True,
            )
            if method == "pivotrl_exact" and selections[method]["kept"] == 0:
                # Exact match left no mixed-outcome turn under pi_0: nothing to train on.
                runs[(method, seed, ov)] = untrained(rc, base_eval, "no exact-match pivots")
                continue
            marker = out / "settings.json"
            if out.exists() and (
                not marker.exists() or json.loads(marker.read_text()).get("key") != key
            ):
                import shutil

                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            atomic.write_json(marker, {"key": key})
            train_run(rc, p, method, seed, out, progress)
            result = evaluate_run(rc, evaluator, out, method, progress)
            atomic.write_json(result_file, {"key": key, "result": result})
            runs[(method, seed, ov)] = result
        heldout = read_heldout(wd)
        if "turn_acceptance" not in cached:
            cached["turn_acceptance"] = evaluator.turn_acceptance(p.base / "model", heldout)
            atomic.write_json(base_file, cached)
        base_eval["turn_acceptance"] = cached["turn_acceptance"]
        for (method, seed, ov), result in runs.items():
            if result.get("skipped"):
                for pt in result["curve"]:
                    pt["turn_acceptance"] = cached["turn_acceptance"]
                continue
            out = run_dir(wd, method, seed, ov)
            if add_turn_acceptance(evaluator, out, result, heldout):
                done = json.loads((out / "result.json").read_text())
                atomic.write_json(out / "result.json", {"key": done["key"], "result": result})
    finally:
        evaluator.close()
    summary = summarize(c, base_eval, runs, selections, profile_turns)
    seconds = time.perf_counter() - t0
    summary["seconds"] = seconds
    results = Path(c.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/paper_claims.py", *argv])
    summary["command"] = command
    summary["config"] = c.to_dict()
    atomic.write_json(results / "results.json", summary)
    atomic.write_text(results / "report.md", report_markdown(c, summary, command, seconds))
    plot(summary, runs, results)
    return summary


if __name__ == "__main__":
    os.chdir(REPO)
    out = main(sys.argv[1:])
    brief = {
        "seconds": out["seconds"],
        "base": {k: out["base"][k] for k in ("in_domain", "ood")},
        "methods": {
            k: {
                "in_domain": v["in_domain"],
                "ood_change": v["ood_change"],
                "rollout_turns": v["rollout_turns"],
                "to_match_e2e": v.get("to_match_e2e"),
            }
            for k, v in out["methods"].items()
        },
    }
    print(json.dumps(brief, indent=1, default=str))
