"""The end-to-end demo driver: SFT trajectories -> pi_0 -> pivots -> PivotRL -> evaluation.

Each stage runs the project's own commands (in this process) and is cached in the work folder:
a stage whose settings are unchanged since it finished is skipped; one that was interrupted
resumes (the commands resume from their journals and checkpoints); one whose settings changed
is redone with the stages after it. See configs/demo.py for the stages and knobs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pivotrl_jax import atomic, cli, compile_cache
from pivotrl_jax import config as config_lib
from pivotrl_jax.errors import PivotError

STAGE_DIR = ".stages"


class StageFailed(PivotError):
    """A stage's command failed; its own message is printed above this one."""


def run_cli(argv: Sequence[str]) -> None:
    rc = cli.main(list(argv))
    if rc != 0:
        raise StageFailed(f"`pivotrl {' '.join(argv)}` exited with code {rc}")


class Stages:
    """Runs named stages once per settings; later stages depend on earlier ones' settings."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.seconds: dict[str, float] = {}
        self.skipped: list[str] = []
        self._chain = ""

    def run(self, name: str, settings: Any, outputs: Sequence[Path], fn: Callable[[], Any]):
        self._chain = hashlib.sha256(
            (self._chain + json.dumps(settings, sort_keys=True, default=str)).encode()
        ).hexdigest()
        marks = self.workdir / STAGE_DIR
        done, started = marks / f"{name}.done", marks / f"{name}.started"
        if done.exists() and done.read_text() == self._chain:
            self.skipped.append(name)
            return
        if not (started.exists() and started.read_text() == self._chain):
            for out in outputs:  # settings changed (or first run): start clean
                if out.is_dir():
                    shutil.rmtree(out)
                elif out.exists():
                    out.unlink()
            done.unlink(missing_ok=True)
            atomic.write_text(started, self._chain)
        print(f"[demo] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        fn()
        self.seconds[name] = time.perf_counter() - t0
        atomic.write_text(done, self._chain)


# ---------------------------------------------------------------------------------------------
# Data.


def _corrupt(rows: list[dict], noisy_kinds: set[str], rate: float, rng: random.Random) -> int:
    """Replace, with probability `rate`, each assistant turn of a noisy-kind trajectory by the
    assistant turn at the same position of another trajectory of the same domain: a well-formed
    but usually wrong action. Returns the number of turns replaced."""
    by_pos: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        k = 0
        for m in r["messages"]:
            if m["role"] == "assistant":
                by_pos.setdefault((r["domain"], k), []).append(m)
                k += 1
    replaced = 0
    for r in rows:
        if r.get("metadata", {}).get("kind") not in noisy_kinds:
            continue
        k = 0
        for i, m in enumerate(r["messages"]):
            if m["role"] != "assistant":
                continue
            pool = by_pos[(r["domain"], k)]
            if rng.random() < rate and len(pool) > 1:
                other = rng.choice(pool)
                if other is not m:
                    new = json.loads(json.dumps(other))
                    # keep the tool_call ids the following tool messages refer to
                    for new_call, old_call in zip(
                        new.get("tool_calls") or [], m.get("tool_calls") or []
                    ):
                        new_call["id"] = old_call["id"]
                    if len(new.get("tool_calls") or []) == len(m.get("tool_calls") or []):
                        r["messages"][i] = new
                        replaced += 1
            k += 1
    return replaced


def make_data(c, out: Path) -> dict:
    """pretrain.jsonl (pi_0's mix), sft.jsonl (PivotRL's trajectories), tokenizer.txt."""
    from pivotrl_jax.data.tokenizer import template_phrases
    from pivotrl_jax.envs import generate_sft

    rng = random.Random(c.seed)
    d = c.data
    pretrain, kinds_report = [], {}
    for domain in c.domains:
        rows = generate_sft(domain, d.pretrain_per_domain, seed=c.seed + 101)
        kinds = sorted({r["metadata"]["kind"] for r in rows})
        shuffled = kinds[:]
        random.Random(f"{c.seed}:{domain}").shuffle(shuffled)
        n_absent = round(d.absent_kind_fraction * len(kinds))
        n_noisy = round(d.noisy_kind_fraction * len(kinds))
        absent = set(shuffled[:n_absent])
        noisy = set(shuffled[n_absent : n_absent + n_noisy])
        rows = [r for r in rows if r["metadata"]["kind"] not in absent]
        replaced = _corrupt(rows, noisy, d.noise_rate, rng)
        kinds_report[domain] = {
            "absent": sorted(absent),
            "noisy": sorted(noisy),
            "clean": sorted(set(kinds) - absent - noisy),
            "noisy_turns_replaced": replaced,
            "trajectories": len(rows),
        }
        pretrain += rows
    pretrain += generate_sft("ood", d.pretrain_ood, seed=c.seed + 101)
    rng.shuffle(pretrain)
    sft = [
        r for domain in c.domains for r in generate_sft(domain, d.sft_per_domain, seed=c.seed + 202)
    ]
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_jsonl(out / "pretrain.jsonl", pretrain)
    atomic.write_jsonl(out / "sft.jsonl", sft)
    preamble = " ".join(template_phrases())
    texts = [
        preamble + json.dumps(r["messages"]) + json.dumps(r.get("tools") or [])
        for r in pretrain[:400]
    ]
    atomic.write_text(out / "tokenizer.txt", "\n".join(t.replace("\n", " ") for t in texts))
    report = {
        "pretrain_trajectories": len(pretrain),
        "sft_trajectories": len(sft),
        "kinds": kinds_report,
    }
    atomic.write_json(out / "data_report.json", report)
    return report


def write_trajectory_records(tokenizer_dir: Path, jsonl: Path, out: Path, max_tokens: int) -> dict:
    """Whole-trajectory SFT records (loss on every assistant span) as ArrayRecord shards."""
    from transformers import AutoTokenizer

    from pivotrl_jax.data import records as records_io
    from pivotrl_jax.data.sft_records import trajectory_records

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    recs, counts = trajectory_records(tok, rows, max_tokens=max_tokens)
    records_io.write_records(out, recs, prefix="trajectories")
    atomic.write_json(out / "counts.json", counts)
    print(
        f"[demo] {counts['kept']} trajectory records ({counts['skipped']} over {max_tokens} "
        f"tokens skipped)",
        file=sys.stderr,
    )
    return counts


# ---------------------------------------------------------------------------------------------
# Evaluation.


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def open_eval_engine(model_dir: str | Path):
    """(engine, tokenizer) for `evaluate`: the in-process JAX engine on `model_dir`'s weights;
    `engine.update_weights(folder, version)` swaps in another model of the same shape."""
    from transformers import AutoTokenizer

    from pivotrl_jax.rollout.jax_engine import JaxEngine, JaxEngineOptions

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    engine = JaxEngine.from_pretrained(
        model_dir, options=JaxEngineOptions(max_batch_size=64, truncation="left")
    )
    return engine, tok


def evaluate(
    engine,
    tok,
    domains: Sequence[str],
    e,
    episodes: int,
    ood_questions: int,
    progress: bool = True,
) -> dict:
    """In-domain episode success per domain and out-of-domain accuracy with the engine's
    current weights; `e` holds temperature, max_new_tokens, max_turns and seed."""
    from pivotrl_jax.envs import generate_tasks
    from pivotrl_jax.eval.episodes import run_episodes
    from pivotrl_jax.eval.policy import EnginePolicy
    from pivotrl_jax.rollout.base import SamplingParams

    params = SamplingParams(
        temperature=e.temperature,
        max_new_tokens=e.max_new_tokens,
        stop_token_ids=(tok.eos_token_id,),
        seed=e.seed,
    )
    out: dict[str, Any] = {}
    for domain, n, turns in [
        *((d, episodes, e.max_turns) for d in domains),
        ("ood", ood_questions, 1),
    ]:
        if n <= 0:
            continue
        policy = EnginePolicy(engine, tok, params)
        tasks = generate_tasks(domain, n, seed=e.seed, split="eval")
        t0 = time.perf_counter()
        results = run_episodes(
            tasks, policy, max_turns=turns, progress=progress, desc=f"eval {domain}"
        )
        wins = sum(r.success for r in results)
        lo, hi = wilson_interval(wins, len(results))
        out[domain] = {
            "success": wins / len(results),
            "n": len(results),
            "ci95": [lo, hi],
            "mean_turns": sum(r.turns for r in results) / len(results),
            "generated_tokens": policy.generated_tokens,
            "seconds": time.perf_counter() - t0,
        }
    return out


def evaluate_model(model_dir: str | Path, domains: Sequence[str], e, progress: bool = True) -> dict:
    """`evaluate` on one model folder with `e.episodes_per_domain` and `e.ood_questions`."""
    engine, tok = open_eval_engine(model_dir)
    try:
        out = evaluate(engine, tok, domains, e, e.episodes_per_domain, e.ood_questions, progress)
    finally:
        engine.close()
    return {"model_dir": str(model_dir), **out}


# ---------------------------------------------------------------------------------------------
# Report.


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r.get("step", i + 1) for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), dpi=100)
    for ax, key, title in (
        (axes[0], "reward/mean", "rollout reward"),
        (axes[1], "kl/mean", "KL(pi_theta || pi_0), k3"),
    ):
        ys = [r.get(key, float("nan")) for r in rows]
        ax.plot(steps, ys, marker=".", color="#4c72b0")
        ax.set_title(title)
        ax.set_xlabel("iteration")
    fig.tight_layout()
    with atomic.atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def format_table(report: dict, domains: Sequence[str]) -> str:
    base, final = report["eval"]["base"], report["eval"]["pivotrl"]
    rows = [("", "base pi_0", "PivotRL", "change")]
    for d in [*domains, "ood"]:
        b, f = base[d]["success"], final[d]["success"]
        label = f"{d} success" if d != "ood" else "out-of-domain accuracy"
        rows.append((label, f"{100 * b:.1f}%", f"{100 * f:.1f}%", f"{100 * (f - b):+.1f}"))
    p = report["pivots"]
    rows.append(
        (
            "pivots kept / candidates",
            f"{p['kept']} / {p['candidates']}",
            f"({100 * p['kept_fraction']:.0f}%)",
            "",
        )
    )
    rows.append(
        (
            "rollout turns (profile + train)",
            str(report["rollout_turns"]["profile"]),
            str(report["rollout_turns"]["train"]),
            "",
        )
    )
    rows.append(("time (s)", f"{report['seconds_total']:.0f}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The pipeline.


@dataclasses.dataclass(frozen=True)
class Paths:
    """The work folder's layout."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        if name in ("data", "base", "candidates", "profiled", "pivots", "train", "final", "eval"):
            return self.root / name
        raise AttributeError(name)


def domain_verifiers(domains: Sequence[str]) -> str:
    """`extract`'s domain=verifier list for the synthetic domains."""
    names = {"terminal": "shell", "tool_use": "tool_call"}
    return ",".join(f"{d}={names[d]}" for d in domains if d in names)


def build_base(c, p: Paths, progress: bool) -> None:
    """Tokenizer + tiny model (init-model), whole-trajectory pretraining (sft), HF export."""
    b = c.base
    run_cli(
        [
            "init-model",
            f"--config=configs/model.py:{b.model_variant}",
            f"--config.model.num_hidden_layers={b.num_hidden_layers}",
            *([f"--config.model.hidden_size={b.hidden_size}"] if b.get("hidden_size") else []),
            f"--config.tokenizer.vocab_size={b.vocab_size}",
            f"--config.tokenizer.extra_text_files=('{p.data / 'tokenizer.txt'}',)",
            f"--config.seed={c.seed}",
            "--output",
            str(p.base / "init"),
        ]
    )
    write_trajectory_records(
        p.base / "init", p.data / "pretrain.jsonl", p.base / "traj", max(b.length_buckets)
    )
    run_cli(
        [
            "sft",
            "--config=configs/train.py:sft",
            f"--config.model_dir={p.base / 'init'}",
            f"--config.trajectories={p.base / 'traj'}",
            "--config.sft.prefix=trajectories",
            "--config.train.pack=True",
            "--output",
            str(p.base / "sft"),
            f"--config.sft.steps={b.steps}",
            f"--config.sft.batch_size={b.batch_size}",
            f"--config.sft.length_buckets={tuple(b.length_buckets)}",
            f"--config.optim.learning_rate={b.learning_rate}",
            "--config.optim.schedule=warmup_cosine",
            f"--config.optim.warmup_steps={b.warmup_steps}",
            f"--config.optim.decay_steps={b.steps}",
            f"--config.seed={c.seed}",
            "--config.checkpoint.every=50",
            *([] if progress else ["--config.log.progress=False"]),
        ]
    )
    run_cli(["export", "--run", str(p.base / "sft"), "--output", str(p.base / "model")])


def extract(c, p: Paths, out: Path, verifiers: str, jsonl: Path | None = None) -> None:
    """Candidate turns of `jsonl` (default: the SFT trajectories) for pi_0's tokenizer."""
    run_cli(
        [
            "extract",
            "--input",
            str(jsonl or p.data / "sft.jsonl"),
            "--output",
            str(out),
            "--tokenizer",
            str(p.base / "model"),
            f"--config.verifiers={verifiers}",
            f"--config.max_prompt_tokens={max(c.base.length_buckets) - c.profile.max_new_tokens}",
        ]
    )


def profile(c, p: Paths, candidates: Path, out: Path, variant: str, progress: bool) -> None:
    """K samples per candidate from pi_0; `variant` "envs" scores with the domains' functional
    verifiers, "" with the verifier each candidate names (set at extraction)."""
    pr = c.profile
    run_cli(
        [
            "profile",
            f"--config=configs/profile.py{':' + variant if variant else ''}",
            "--candidates",
            str(candidates),
            "--output",
            str(out),
            f"--config.model_dir={p.base / 'model'}",
            f"--config.profile.k={pr.k}",
            f"--config.profile.temperature={pr.temperature}",
            f"--config.profile.max_new_tokens={pr.max_new_tokens}",
            f"--config.profile.candidates_per_call={pr.candidates_per_call}",
            f"--config.profile.seed={c.seed}",
            *([] if progress else ["--noprogress"]),
        ]
    )


def select(profiled: Path, out: Path, lambda_diff: float, budget: int, min_variance: float):
    run_cli(
        [
            "select",
            "--profiled",
            str(profiled),
            "--output",
            str(out),
            f"--config.select.lambda_diff={lambda_diff}",
            f"--config.select.budget={budget}",
            f"--config.select.min_variance={min_variance}",
        ]
    )
    return json.loads((out / "select_report.json").read_text())


def prepare(c, st: Stages, p: Paths, progress: bool) -> dict:
    """Stages data, base, extract, profile and select; returns the selection report."""
    st.run(
        "data",
        {"seed": c.seed, "domains": c.domains, **config_lib.to_dict(c.data)},
        [p.data],
        lambda: make_data(c, p.data),
    )
    st.run("base", config_lib.to_dict(c.base), [p.base], lambda: build_base(c, p, progress))
    st.run(
        "extract",
        {"max_prompt": max(c.base.length_buckets)},
        [p.candidates],
        lambda: extract(c, p, p.candidates, domain_verifiers(c.domains)),
    )
    st.run(
        "profile",
        config_lib.to_dict(c.profile),
        [p.profiled],
        lambda: profile(c, p, p.candidates, p.profiled, "envs", progress),
    )
    sl = c.select
    st.run(
        "select",
        config_lib.to_dict(sl),
        [p.pivots],
        lambda: select(p.profiled, p.pivots, sl.lambda_diff, sl.budget, sl.min_variance),
    )
    sel = json.loads((p.pivots / "select_report.json").read_text())
    if sel["kept"] == 0:
        raise StageFailed(
            f"no pivots: all {sel['candidates']} candidates were dropped ({sel['dropped']}); "
            "pi_0 needs mixed outcomes: more base training, a larger K, or a higher lambda_diff"
        )
    return sel


def run(c, progress: bool = True) -> dict:
    """Run (or resume) the whole demo described by `c` (configs/demo.py); returns the report."""
    t_start = time.perf_counter()
    wd = Path(c.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    config_lib.write_resolved_config(c, wd, command=" ".join(sys.argv))
    compile_cache.enable(wd / ".jax_cache")
    st = Stages(wd)
    p = Paths(wd)
    data, base = p.data, p.base
    profiled, pivots, train, final = p.profiled, p.pivots, p.train, p.final
    evald = p.eval
    t = c.train
    b = c.base
    noprog = [] if progress else ["--config.log.progress=False"]
    sel = prepare(c, st, p, progress)

    def train_and_export():
        run_cli(
            [
                "train",
                "--config=configs/train.py:envs",
                f"--config.model_dir={base / 'model'}",
                f"--config.pivots={pivots}",
                "--output",
                str(train),
                f"--config.train.steps={t.steps}",
                f"--config.train.pivots_per_step={t.pivots_per_step}",
                f"--config.train.micro_batches={t.micro_batches}",
                f"--config.rollout.group_size={t.group_size}",
                f"--config.rollout.max_new_tokens={t.max_new_tokens}",
                f"--config.optim.learning_rate={t.learning_rate}",
                f"--config.loss.beta={t.beta}",
                f"--config.seed={c.seed}",
                f"--config.train.max_prompt_len={max(b.length_buckets)}",
                "--config.checkpoint.every=10",
                *noprog,
            ]
        )
        run_cli(["export", "--run", str(train), "--output", str(final)])

    st.run("train", config_lib.to_dict(t), [train, final], train_and_export)
    for name, model in (("base", base / "model"), ("pivotrl", final)):
        st.run(
            f"eval_{name}",
            config_lib.to_dict(c.eval),
            [evald / f"{name}.json"],
            lambda model=model, name=name: atomic.write_json(
                evald / f"{name}.json", evaluate_model(model, c.domains, c.eval, progress)
            ),
        )

    prof_rollouts = sum(
        json.loads(p.read_text())["rollouts"] for p in profiled.glob("summary-*.json")
    )
    metrics = read_metrics(train)
    report = {
        "eval": {n: json.loads((evald / f"{n}.json").read_text()) for n in ("base", "pivotrl")},
        "pivots": {
            k: sel[k]
            for k in ("candidates", "kept", "kept_fraction", "zero_variance_fraction", "dropped")
        },
        "rollout_turns": {
            "profile": prof_rollouts,
            "train": t.steps * t.pivots_per_step * t.group_size,
        },
        "train_curves": [
            {k: r.get(k) for k in ("step", "reward/mean", "reward/std", "kl/mean")} for r in metrics
        ],
        "data": json.loads((data / "data_report.json").read_text()),
        "stage_seconds": st.seconds,
        "stages_reused": st.skipped,
        "seconds_total": time.perf_counter() - t_start,
    }
    atomic.write_json(wd / "report.json", report)
    if metrics:
        plot_curves(metrics, wd / "train_curves.png")
    shutil.copyfile(pivots / "mean_reward_hist.png", wd / "pivot_mean_reward_hist.png")
    table = format_table(report, c.domains)
    atomic.write_text(wd / "report.txt", table + "\n")
    print(table)
    print(
        f"\nwrote {wd / 'report.json'}, {wd / 'train_curves.png'}, "
        f"{wd / 'pivot_mean_reward_hist.png'}",
        file=sys.stderr,
    )
    return report
