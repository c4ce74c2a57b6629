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
import resource
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
        self.seconds: dict[str, float] = {}  # stages run now
        self.made_seconds: dict[str, float] = {}  # every stage, when it was run (now or before)
        self.skipped: list[str] = []
        self._chain = ""

    @property
    def chain(self) -> str:
        """The settings of every stage run so far, hashed: names what those stages made."""
        return self._chain

    def run(self, name: str, settings: Any, outputs: Sequence[Path], fn: Callable[[], Any]):
        self._chain = hashlib.sha256(
            (self._chain + json.dumps(settings, sort_keys=True, default=str)).encode()
        ).hexdigest()
        marks = self.workdir / STAGE_DIR
        done, started = marks / f"{name}.done", marks / f"{name}.started"
        took = marks / f"{name}.seconds"
        if done.exists() and done.read_text() == self._chain:
            self.skipped.append(name)
            if took.exists():
                self.made_seconds[name] = float(took.read_text())
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
        self.seconds[name] = self.made_seconds[name] = time.perf_counter() - t0
        atomic.write_text(took, repr(self.seconds[name]))
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
    """pretrain.jsonl (pi_0's mix), sft.jsonl (PivotRL's trajectories), tokenizer.txt (rendered
    conversations to train the tokenizer on) and phrases.json (the domains' fixed prompt text,
    their tool specs, to encode as one token each)."""
    from pivotrl_jax.data.tokenizer import train_tokenizer
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
    render = train_tokenizer((), vocab_size=512)  # only its chat template is used here
    texts = [
        render.apply_chat_template(r["messages"], tools=r.get("tools") or None, tokenize=False)
        for r in pretrain[:400]
    ]
    atomic.write_text(out / "tokenizer.txt", "\n".join(t.replace("\n", " ") for t in texts))
    tools = {json.dumps(t, ensure_ascii=False) for r in pretrain for t in r.get("tools") or []}
    atomic.write_json(out / "phrases.json", sorted(tools))
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
# The pipeline.


@dataclasses.dataclass(frozen=True)
class Paths:
    """The work folder's layout."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        if name in (
            "data",
            "base",
            "candidates",
            "profiled",
            "pivots",
            "train",
            "final",
            "sft",
            "sft_model",
            "heldout",
            "eval",
        ):
            return self.root / name
        raise AttributeError(name)


def domain_verifiers(domains: Sequence[str]) -> str:
    """`extract`'s domain=verifier list: each synthetic domain's functional verifier."""
    from pivotrl_jax.envs import verifier_spec

    return ",".join(f"{d}={verifier_spec(d).name}" for d in domains)


def build_base(c, p: Paths, progress: bool) -> None:
    """Tokenizer + tiny model (init-model), whole-trajectory pretraining (sft), HF export."""
    b = c.base
    run_cli(
        [
            "init-model",
            f"--config=configs/model.py:{b.model_variant}",
            *(f"--config.model.{k}={v}" for k, v in sorted(config_lib.to_dict(b.model).items())),
            f"--config.tokenizer.vocab_size={b.vocab_size}",
            f"--config.tokenizer.extra_text_files=('{p.data / 'tokenizer.txt'}',)",
            "--config.tokenizer.phrases=True",
            f"--config.tokenizer.phrase_files=('{p.data / 'phrases.json'}',)",
            f"--config.seed={c.seed}",
            "--output",
            str(p.base / "init"),
        ]
    )
    write_trajectory_records(
        p.base / "init", p.data / "pretrain.jsonl", p.base / "traj", max(b.length_buckets)
    )
    sft_run(
        c,
        p.base / "init",
        p.base / "traj",
        p.base / "sft",
        steps=b.steps,
        batch_size=b.batch_size,
        length_buckets=b.length_buckets,
        learning_rate=b.learning_rate,
        warmup_steps=b.warmup_steps,
        progress=progress,
    )
    run_cli(["export", "--run", str(p.base / "sft"), "--output", str(p.base / "model")])


def sft_run(
    c,
    model: Path,
    records: Path,
    out: Path,
    *,
    steps: int,
    batch_size: int,
    length_buckets: Sequence[int],
    learning_rate: float,
    warmup_steps: int,
    progress: bool,
) -> None:
    """`pivotrl sft` on whole-trajectory records (loss on every assistant span), warm-up +
    cosine learning rate."""
    run_cli(
        [
            "sft",
            "--config=configs/train.py:sft",
            f"--config.model_dir={model}",
            f"--config.trajectories={records}",
            "--config.sft.prefix=trajectories",
            "--config.train.pack=True",
            "--output",
            str(out),
            f"--config.sft.steps={steps}",
            f"--config.sft.batch_size={batch_size}",
            f"--config.sft.length_buckets={tuple(length_buckets)}",
            f"--config.optim.learning_rate={learning_rate}",
            "--config.optim.schedule=warmup_cosine",
            f"--config.optim.warmup_steps={warmup_steps}",
            f"--config.optim.decay_steps={steps}",
            f"--config.seed={c.seed}",
            "--config.checkpoint.every=100",
            *([] if progress else ["--config.log.progress=False"]),
        ]
    )


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
            f"--config.max_prompt_tokens={c.train.max_prompt_len}",
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


def measure_rewards(c, out: Path) -> dict:
    """The state-only oracle's and shuffled actions' mean reward at the SFT trajectories'
    candidate turns, per domain (`envs/oracle.py`)."""
    from pivotrl_jax.envs.oracle import measure

    rows = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines() if line]
    got = {d: measure(d, [r for r in rows if r["domain"] == d], c.seed) for d in c.domains}
    atomic.write_json(out / "rewards_check.json", got)
    return got


def generators_fingerprint(root: Path | None = None) -> str:
    """A hash of the task generators' and experts' source (`root`, by default `pivotrl_jax/envs`):
    the data stage, and every stage after it, is redone when they change."""
    if root is None:
        import pivotrl_jax.envs as envs

        root = Path(envs.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def prepare(c, st: Stages, p: Paths, progress: bool) -> dict:
    """Stages data, base, reward check, extract, profile and select; returns the selection
    report."""
    st.run(
        "data",
        {
            "seed": c.seed,
            "domains": c.domains,
            **config_lib.to_dict(c.data),
            "generators": generators_fingerprint(),
        },
        [p.data],
        lambda: make_data(c, p.data),
    )
    st.run("base", config_lib.to_dict(c.base), [p.base], lambda: build_base(c, p, progress))
    st.run("rewards_check", {}, [p.data / "rewards_check.json"], lambda: measure_rewards(c, p.data))
    st.run(
        "extract",
        {"max_prompt": c.train.max_prompt_len},
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


def train_argv(c, base_model: Path, pivots: Path, out: Path, progress: bool, **extra) -> list[str]:
    """The `pivotrl train` command line of the demo's GRPO run (configs/demo.py `train`) from
    `base_model` on `pivots`; `extra` adds `--config.KEY=VALUE` overrides (dotted keys with `__`
    for `.`)."""
    t = c.train
    overrides = [f"--config.{k.replace('__', '.')}={v}" for k, v in extra.items()]
    return [
        "train",
        "--config=configs/train.py:envs",
        f"--config.model_dir={base_model}",
        f"--config.pivots={pivots}",
        "--output",
        str(out),
        f"--config.train.steps={t.steps}",
        f"--config.train.pivots_per_step={t.pivots_per_step}",
        f"--config.train.micro_batches={t.micro_batches}",
        f"--config.rollout.group_size={t.group_size}",
        f"--config.rollout.max_new_tokens={t.max_new_tokens}",
        f"--config.optim.learning_rate={t.learning_rate}",
        f"--config.loss.beta={t.beta}",
        f"--config.train.kl_metric={t.beta > 0}",
        f"--config.train.old_logprobs={t.old_logprobs}",
        f"--config.seed={c.seed}",
        f"--config.train.max_prompt_len={t.max_prompt_len}",
        *([f"--config.train.length_buckets={tuple(t.length_buckets)}"] if t.length_buckets else []),
        *([f"--config.train.compile_rows={tuple(t.compile_rows)}"] if t.compile_rows else []),
        f"--config.checkpoint.every={t.checkpoint_every}",
        *overrides,
        *([] if progress else ["--config.log.progress=False"]),
    ]


def train_pivotrl(c, p: Paths, pivots: Path, out: Path, export_to: Path, progress: bool, **extra):
    """Turn-level GRPO on `pivots` from pi_0 (`train_argv`), then an HF export of the final
    policy."""
    run_cli(train_argv(c, p.base / "model", pivots, out, progress, **extra))
    run_cli(["export", "--run", str(out), "--output", str(export_to)])


def sft_baseline(c, p: Paths, progress: bool) -> None:
    """SFT from pi_0 on PivotRL's own trajectories (every assistant turn), then export."""
    s = c.sft
    write_trajectory_records(
        p.base / "model", p.data / "sft.jsonl", p.sft / "traj", max(c.base.length_buckets)
    )
    counts = json.loads((p.sft / "traj" / "counts.json").read_text())
    steps = max(1, round(s.epochs * counts["kept"] / s.batch_size))
    sft_run(
        c,
        p.base / "model",
        p.sft / "traj",
        p.sft / "run",
        steps=steps,
        batch_size=s.batch_size,
        length_buckets=c.base.length_buckets,
        learning_rate=s.learning_rate,
        warmup_steps=max(1, steps // 20),
        progress=progress,
    )
    run_cli(["export", "--run", str(p.sft / "run"), "--output", str(p.sft_model)])


def heldout(c, p: Paths) -> None:
    """Expert trajectories of evaluation sessions, extracted into candidate turns."""
    from pivotrl_jax.eval.turns import heldout_trajectories

    rows = heldout_trajectories(c.domains, c.eval.heldout_per_domain, c.eval.seed)
    atomic.write_jsonl(p.eval / "heldout.jsonl", rows)
    extract(c, p, p.heldout, domain_verifiers(c.domains), p.eval / "heldout.jsonl")


def read_records(folder: Path, prefix: str = "candidates") -> list[dict]:
    from pivotrl_jax.data import records as records_io

    return list(records_io.read_records(folder, prefix=prefix))


def questions_key(tasks: Sequence[Any]) -> str:
    """A digest of the questions an evaluation asks (its cached results name it)."""
    return hashlib.sha256("\n".join(t.question for t in tasks).encode()).hexdigest()[:16]


class Evaluations:
    """The evaluation stages: one engine (opened at first use) for every model, the OOD
    question kinds chosen once from pi_0, then per-item results per model in eval/NAME.json."""

    def __init__(self, c, st: Stages, p: Paths, progress: bool):
        self.c, self.st, self.p, self.progress = c, st, p, progress
        self._cmp = None
        self.ood_item_kinds: list[str] = []  # the kind of each OOD item, set by `run`

    @property
    def cmp(self):
        from pivotrl_jax.eval.compare import Comparison

        if self._cmp is None:
            self._cmp = Comparison(self.p.base / "model")
        return self._cmp

    def ood_kinds(self) -> list[str]:
        """The kinds of out-of-domain question pi_0 answers at least `ood_min_accuracy` of the
        time, on a probe set of validation questions (`compare.ood_part`), never evaluation ones: a
        kind is not chosen because pi_0 happened to answer the very items it is then tested on."""
        from pivotrl_jax.eval import compare

        e, path = self.c.eval, self.p.eval / "ood_kinds.json"
        tasks = compare.ood_tasks(e.ood_probe, seed=e.seed + 1000, part="validation")

        def probe():
            self.cmp.load(self.p.base / "model")
            results = self.cmp.episodes(tasks, e, 1, self.progress, "ood probe")
            kinds = compare.ood_kinds(results, tasks, e.ood_min_accuracy)
            atomic.write_json(path, kinds)

        settings = {"eval": config_lib.to_dict(e), "questions": questions_key(tasks)}
        self.st.run("ood_kinds", settings, [path], probe)
        return json.loads(path.read_text())

    def run(self, models: dict[str, Path]) -> dict[str, dict]:
        from pivotrl_jax.envs import generate_tasks
        from pivotrl_jax.envs.domains import verifier_config
        from pivotrl_jax.eval import compare
        from pivotrl_jax.pivots.profile import DomainVerifiers

        e = self.c.eval
        kinds = self.ood_kinds()
        tasks = {
            d: generate_tasks(d, e.episodes_per_domain, e.seed, "eval") for d in self.c.domains
        }
        tasks["ood"] = compare.ood_tasks(e.ood_questions, e.seed, kinds, part="test")
        self.ood_item_kinds = [t.kind for t in tasks["ood"]]  # per item of every model's "ood"
        cands = read_records(self.p.heldout)
        verifiers = DomainVerifiers.from_mappings(verifier_config(tuple(self.c.domains)), {})
        out = {}
        for name, model in models.items():
            path = self.p.eval / f"{name}.json"
            self.st.run(
                f"eval_{name}",
                {"eval": config_lib.to_dict(e), "kinds": kinds, "ood": questions_key(tasks["ood"])},
                [path],
                lambda m=model, path=path: atomic.write_json(
                    path, self.cmp.measure(m, e, cands, tasks, verifiers, self.progress)
                ),
            )
            out[name] = json.loads(path.read_text())
        return out

    def close(self) -> None:
        if self._cmp is not None:
            self._cmp.close()


def run(c, progress: bool = True) -> dict:
    """Run (or resume) the whole demo described by `c` (configs/demo.py); returns the report."""
    wd = Path(c.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    with compile_cache.enabled(wd / ".jax_cache"):
        return _run(c, wd, progress)


def _run(c, wd: Path, progress: bool) -> dict:
    t_start = time.perf_counter()
    config_lib.write_resolved_config(c, wd, command=" ".join(sys.argv))
    st = Stages(wd)
    p = Paths(wd)
    sel = prepare(c, st, p, progress)
    st.run(
        "train",
        config_lib.to_dict(c.train),
        [p.train, p.final],
        lambda: train_pivotrl(c, p, p.pivots, p.train, p.final, progress),
    )
    st.run(
        "sft", config_lib.to_dict(c.sft), [p.sft, p.sft_model], lambda: sft_baseline(c, p, progress)
    )
    st.run(
        "heldout",
        {"n": c.eval.heldout_per_domain, "seed": c.eval.seed},
        [p.heldout, p.eval / "heldout.jsonl"],
        lambda: heldout(c, p),
    )
    evals = Evaluations(c, st, p, progress)
    try:
        results = evals.run({"pi_0": p.base / "model", "sft": p.sft_model, "pivotrl": p.final})
    finally:
        evals.close()
    report = build_report(
        c, st, p, sel, results, evals.ood_item_kinds, time.perf_counter() - t_start
    )
    atomic.write_json(wd / "report.json", report)
    metrics = read_metrics(p.train)
    if metrics:
        plot_curves(metrics, wd / "train_curves.png")
    shutil.copyfile(p.pivots / "mean_reward_hist.png", wd / "pivot_mean_reward_hist.png")
    table = format_table(report, c.domains)
    atomic.write_text(wd / "report.txt", table + "\n")
    print(table)
    print(
        f"\nwrote {wd / 'report.json'}, {wd / 'train_curves.png'}, "
        f"{wd / 'pivot_mean_reward_hist.png'}",
        file=sys.stderr,
    )
    return report


# ---------------------------------------------------------------------------------------------
# Report.


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_report(
    c,
    st: Stages,
    p: Paths,
    sel: dict,
    results: dict,
    ood_item_kinds: Sequence[str],
    seconds: float,
) -> dict:
    from pivotrl_jax.eval import compare

    checks = json.loads((p.data / "rewards_check.json").read_text())
    prof_rollouts = sum(
        json.loads(f.read_text())["rollouts"] for f in p.profiled.glob("summary-*.json")
    )
    t = c.train
    return {
        **compare.summarize(results, base="pi_0"),
        "ood_accuracy_by_kind": compare.ood_by_kind(results, ood_item_kinds),
        "oracle_reward": {d: v["oracle"] for d, v in checks.items()},
        "control_reward": {d: v["control"] for d, v in checks.items()},
        "ood_kinds": json.loads((p.eval / "ood_kinds.json").read_text()),
        "pivots": {
            k: sel[k]
            for k in ("candidates", "kept", "kept_fraction", "zero_variance_fraction", "dropped")
        },
        "rollout_turns": {
            "profile": prof_rollouts,
            "train": t.steps * t.pivots_per_step * t.group_size,
        },
        "train_curves": [
            {k: r.get(k) for k in ("step", "reward/mean", "reward/std", "kl/mean")}
            for r in read_metrics(p.train)
        ],
        "data": json.loads((p.data / "data_report.json").read_text()),
        "stages_reused": st.skipped,
        "seconds": {"total": seconds, **st.seconds},
        # Each stage's seconds when it was run, this time or by an earlier invocation.
        "seconds_when_made": dict(st.made_seconds),
        # High-water resident memory of this process (every stage runs in it), in GiB.
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r.get("step", i + 1) for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), dpi=100)
    for ax, key, title in (
        (axes[0], "reward/mean", "rollout reward on pivots"),
        (axes[1], "groups/zero_std_fraction", "groups with zero reward variance"),
    ):
        ys = [r.get(key, float("nan")) for r in rows]
        ax.plot(steps, ys, marker=".", color="#4c72b0", linewidth=0.8, markersize=2)
        ax.set_title(title)
        ax.set_xlabel("iteration")
    fig.tight_layout()
    with atomic.atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _cell(d: dict, base: str = "pi_0") -> str:
    out = f"{d['mean']:.1f}%"
    delta = d.get(f"delta_vs_{base}")
    if delta:
        lo, hi = delta["ci95"]
        out += f" ({delta['mean']:+.1f} [{lo:+.1f}, {hi:+.1f}])"
    return out


def format_table(report: dict, domains: Sequence[str]) -> str:
    models = ("pi_0", "sft", "pivotrl")
    rows = [("", "pi_0", "SFT", "PivotRL")]
    turns = report["heldout_turn_acceptance"]
    n = turns["pi_0"]["n"]
    rows.append((f"held-out turn acceptance ({n})", *(_cell(turns[m]) for m in models)))
    for d in domains:
        ep = report["episode_success"]
        rows.append((f"{d} success ({ep['pi_0'][d]['n']})", *(_cell(ep[m][d]) for m in models)))
    ood = report["ood_accuracy"]
    rows.append((f"out-of-domain accuracy ({ood['pi_0']['n']})", *(_cell(ood[m]) for m in models)))
    for kind, by in report.get("ood_accuracy_by_kind", {}).items():
        rows.append((f"  {kind} ({by['pi_0']['n']})", *(_cell(by[m]) for m in models)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    pv = report["pivots"]
    checks = ", ".join(
        f"{d} {report['oracle_reward'][d]:.2f} / {report['control_reward'][d]:.2f}" for d in domains
    )
    lines += [
        "",
        "(paired change vs pi_0 on the same items, 95% interval, in points)",
        f"reward check, oracle / shuffled actions: {checks}",
        f"pivots kept: {pv['kept']} of {pv['candidates']} candidates "
        f"({100 * pv['zero_variance_fraction']:.0f}% had zero reward variance under pi_0)",
        f"rollout turns: profile {report['rollout_turns']['profile']}, "
        f"train {report['rollout_turns']['train']}",
        f"time: {report['seconds']['total']:.0f} s (the stages took "
        f"{sum(report['seconds_when_made'].values()):.0f} s when made), peak resident memory "
        f"{report['peak_rss_gib']:.1f} GiB",
    ]
    return "\n".join(lines)
