"""Offline profiling of candidates under the frozen reference pi_0 (PivotRL Eq. 4).

For each candidate state s the engine samples K single-turn actions a_k ~ pi_0(. | s) (no
environment continuation); the domain's verifier scores each, r_k in [0, 1]; the record gains

    profile = {rewards: [r_1..r_K], mean: mu(s), variance: sigma^2(s), ...}

Work is cut into fixed chunks of `candidates_per_call` candidates (one engine call each, for
throughput). Chunk c samples with seed `stable_seed(seed, c)`, so its result depends only on its
index; finished chunks go to a `Journal`, so a run killed at any moment and started again finishes
with output equal, record for record, to an uninterrupted run. With n processes, process k
profiles chunks k, k + n, k + 2n, ... of the same global cut, so the records of n processes are
those of one.
"""

from __future__ import annotations

import array
import dataclasses
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pivotrl_jax import atomic, faults
from pivotrl_jax.data import records as records_io
from pivotrl_jax.errors import ConfigError, InputError
from pivotrl_jax.pivots.journal import Journal
from pivotrl_jax.pivots.stats import reward_stats, stable_seed
from pivotrl_jax.rewards.base import VerifyState, build_verifier, parse_action
from pivotrl_jax.rewards.runner import VerifierStats, run_verifier


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    k: int = 16  # samples per candidate (the recipes use 16; 8 to 64 seen)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_new_tokens: int = 256
    candidates_per_call: int = 32
    seed: int = 0
    verifier_time_limit_s: float = 10.0
    # A completion cut at max_new_tokens is a turn that never ended: reward 0 (reason
    # "truncated") unless this is set, when the verifier scores the cut text as it is.
    score_truncated: bool = False

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.candidates_per_call < 1:
            raise ValueError(f"candidates_per_call must be >= 1, got {self.candidates_per_call}")

    def sampling(self, chunk: int):
        from pivotrl_jax.rollout.base import SamplingParams  # rollout imports jax: defer it

        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            seed=stable_seed(self.seed, "profile", chunk),
        )


@dataclasses.dataclass(frozen=True)
class VerifierSpec:
    name: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class DomainVerifiers:
    """Builds (once) and applies the verifier for each candidate.

    The verifier is, in order: the one configured for the candidate's domain; the one named in
    the candidate record (`verifier`, set at extraction) with that name's configured params; the
    default.
    """

    def __init__(
        self,
        specs: Mapping[str, VerifierSpec] | None = None,
        default: VerifierSpec = VerifierSpec("tool_call"),
        params_by_name: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.specs = dict(specs or {})
        self.default = default
        self.params_by_name = {k: dict(v) for k, v in (params_by_name or {}).items()}
        self._built: dict[tuple, Any] = {}
        self.stats = VerifierStats()

    @classmethod
    def from_mappings(
        cls, verifiers: Mapping[str, Mapping[str, Any]], params_by_name: Mapping[str, Any]
    ) -> DomainVerifiers:
        """From config sections: `{domain: {"name", "params"}}` and `{verifier name: params}`.

        Every verifier named is built once here, so an unknown name or parameter is a
        ConfigError naming the key rather than a reward of 0 for every sample."""
        specs = {}
        for domain, spec in verifiers.items():
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise ConfigError(f"verifiers.{domain} needs a 'name'")
            specs[domain] = VerifierSpec(spec["name"], dict(spec.get("params", {})))
        out = cls(specs, params_by_name=params_by_name)
        checks = [(f"verifiers.{d}", s) for d, s in specs.items()]
        checks += [
            (f"verifier_params.{n}", VerifierSpec(n, p)) for n, p in out.params_by_name.items()
        ]
        for key, spec in checks:
            try:
                out.build(spec)
            except (KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"{key}: {e}") from None
        return out

    def spec(self, candidate: Mapping[str, Any]) -> VerifierSpec:
        domain = candidate.get("domain") or ""
        if domain in self.specs:
            return self.specs[domain]
        name = candidate.get("verifier")
        if name:
            return VerifierSpec(name, self.params_by_name.get(name, {}))
        return self.default

    def build(self, spec: VerifierSpec) -> Any:
        """The verifier of `spec`, built on first use."""
        key = (spec.name, repr(sorted(spec.params.items())))
        if key not in self._built:
            self._built[key] = build_verifier(spec.name, **dict(spec.params))
        return self._built[key]

    def check(self, candidate: Mapping[str, Any], path: str, index: int) -> None:
        """An InputError (record `index` of shard `path`) when the candidate's verifier cannot
        be built: a record naming an unknown verifier would otherwise score 0 every time."""
        spec = self.spec(candidate)
        try:
            self.build(spec)
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(
                f"verifier {spec.name!r}: {e}",
                path=path,
                line=index + 1,
                field="verifier",
                reason="bad_record",
            ) from None

    def score(self, candidate: Mapping[str, Any], completion_text: str, time_limit_s: float):
        spec = self.spec(candidate)
        state = VerifyState(
            messages=tuple(candidate.get("messages", ())),
            tools=tuple(candidate.get("tools", ())),
            env=candidate.get("env"),
        )
        return run_verifier(
            self.build(spec),
            state,
            parse_action(candidate["expected_action"]),
            parse_action(completion_text),
            time_limit_s=time_limit_s,
            stats=self.stats,
            name=spec.name,
        )


TRUNCATED = "truncated"  # the reason given to a completion that hit max_new_tokens


def score_completion(
    scorer: Any,
    record: Mapping[str, Any],
    completion: Any,
    decode: Callable[[Sequence[int]], str],
    time_limit_s: float,
    score_truncated: bool,
) -> tuple[float, str]:
    """(reward, reason) of one sampled completion at `record`'s state. A completion cut at
    max_new_tokens (finish_reason "length") is a turn that never ended: 0, `TRUNCATED`, without
    running the verifier, unless `score_truncated`. Profiling, held-out evaluation and GRPO all
    score through here."""
    if completion.finish_reason == "length" and not score_truncated:
        return 0.0, TRUNCATED
    res = scorer.score(record, decode(completion.token_ids), time_limit_s)
    return res.reward, res.reason


def profile_chunk(
    candidates: Sequence[Mapping[str, Any]],
    engine: Any,
    decode: Callable[[Sequence[int]], str],
    verifiers: DomainVerifiers,
    cfg: ProfileConfig,
    chunk: int,
) -> tuple[list[dict], dict[str, float]]:
    """Profile one chunk; returns the profiled records and the chunk's timings/counts."""
    t0 = time.perf_counter()
    groups = engine.generate(
        [list(c["prompt_ids"]) for c in candidates], cfg.sampling(chunk), cfg.k
    )
    t1 = time.perf_counter()
    records, tokens = [], 0
    for cand, completions in zip(candidates, groups, strict=True):
        rewards, lengths, reasons, finish = [], [], [], []
        for comp in completions:
            reward, reason = score_completion(
                verifiers, cand, comp, decode, cfg.verifier_time_limit_s, cfg.score_truncated
            )
            rewards.append(reward)
            reasons.append(reason)
            lengths.append(len(comp.token_ids))
            finish.append(comp.finish_reason)
        tokens += sum(lengths)
        mean, var = reward_stats(np.asarray([rewards]))
        profile = {
            "rewards": rewards,
            "mean": float(mean[0]),
            "variance": float(var[0]),
            "k": len(rewards),
            "completion_tokens": lengths,
            "finish_reasons": finish,
            "verifier_reasons": reasons,
        }
        records.append({**cand, "profile": profile})
    t2 = time.perf_counter()
    return records, {"engine_s": t1 - t0, "verify_s": t2 - t1, "tokens": tokens}


def shard_prefix(process_index: int, process_count: int) -> str:
    return f"profiled-p{process_index:05d}-of-{process_count:05d}"


def summary_name(process_index: int, process_count: int) -> str:
    return f"summary-p{process_index:05d}-of-{process_count:05d}.json"


def process_chunks(
    candidates: Iterable[Mapping[str, Any]], chunk_size: int, process_index: int, process_count: int
) -> Iterator[tuple[int, list[Mapping[str, Any]]]]:
    """(global chunk index, its candidates) of the chunks one process owns, read from the
    stream: the candidates cut into chunks of `chunk_size`, every `process_count`-th chunk from
    `process_index` on. One chunk is held at a time."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    stream = iter(candidates)
    for g in itertools.count():
        chunk = list(itertools.islice(stream, chunk_size))
        if not chunk:
            return
        if g % process_count == process_index:
            yield g, chunk


def owned_count(total: int, chunk_size: int, process_index: int, process_count: int) -> int:
    """How many of `total` candidates `process_chunks` gives one process."""
    chunks = range(process_index, -(-total // chunk_size), process_count)
    return sum(min(chunk_size, total - g * chunk_size) for g in chunks)


def mean_reward_histogram(means: Sequence[float], bins: int = 10) -> dict[str, list]:
    counts, edges = np.histogram(np.asarray(means, dtype=float), bins=bins, range=(0.0, 1.0))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


class _Tally:
    """What the summary reports about the profiled records, accumulated one record at a time."""

    def __init__(self):
        self.candidates = self.rollouts = self.tokens = self.zero = 0
        self.mean_sum = 0.0
        self.means = array.array("d")  # 8 bytes a candidate, for the histogram
        self.reasons: Counter = Counter()

    def add(self, profile: Mapping[str, Any]) -> None:
        self.candidates += 1
        self.rollouts += profile["k"]
        self.tokens += sum(profile["completion_tokens"])
        self.zero += profile["variance"] == 0.0
        self.mean_sum += profile["mean"]
        self.means.append(profile["mean"])
        self.reasons.update(profile["verifier_reasons"])


def run_profile(
    candidates: Iterable[Mapping[str, Any]],
    out_dir: str,
    engine: Any,
    decode: Callable[[Sequence[int]], str],
    verifiers: DomainVerifiers,
    cfg: ProfileConfig,
    *,
    process_index: int = 0,
    process_count: int = 1,
    provenance: Mapping[str, Any] | None = None,
    progress: bool = True,
    shard_size: int = 1000,
    total: int | None = None,
    skipped: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Profile this process's slice of `candidates` into `out_dir`; resumable; returns the summary.

    `candidates` is read once, as a stream (`total`, when known, sizes the progress bar;
    `skipped` counts bad candidates the caller left out, by reason); the
    profiled records go to the journal as each chunk finishes and from there to the output
    shards, so memory stays flat however many candidates there are.

    Output: ArrayRecord shards `profiled-pIIIII-of-NNNNN-*` and `summary-pIIIII-of-NNNNN.json`
    (written last: its presence marks the slice complete). `journal-pIIIII-of-NNNNN.jsonl` holds
    finished chunks while the job runs and is removed at the end.
    """
    out = Path(out_dir)
    tag = f"p{process_index:05d}-of-{process_count:05d}"
    summary_path = out / summary_name(process_index, process_count)
    journal_path = out / f"journal-{tag}.jsonl"
    if summary_path.exists():
        journal_path.unlink(missing_ok=True)  # a run killed between the summary and this
        return json.loads(summary_path.read_text())
    n = cfg.candidates_per_call
    start = time.perf_counter()
    engine_s = verify_s = 0.0
    tokens = 0
    owned: list[int] = []  # global indices of this process's chunks, in order
    with Journal(journal_path) as journal:
        mine_total = None if total is None else owned_count(total, n, process_index, process_count)
        bar = tqdm(total=mine_total, desc=f"profile {tag}", unit="cand", disable=not progress)
        for i, chunk in process_chunks(candidates, n, process_index, process_count):
            owned.append(i)
            if i in journal.done:
                bar.update(len(chunk))
                continue
            missing = [c.get("id") for c in chunk if not c.get("prompt_ids")]
            if missing:
                raise ValueError(
                    f"{len(missing)} candidates have no prompt_ids (first: {missing[0]!r}); "
                    "extract them with a tokenizer (`pivotrl extract --tokenizer DIR`)"
                )
            faults.point("profile.chunk_start")
            recs, timing = profile_chunk(chunk, engine, decode, verifiers, cfg, i)
            engine_s += timing["engine_s"]
            verify_s += timing["verify_s"]
            tokens += timing["tokens"]
            journal.append(i, recs)
            bar.update(len(chunk))
        bar.close()
        prov = dict(provenance or {})
        prov["sampling"] = dataclasses.asdict(cfg)
        prov["verifiers"] = {
            d: {"name": s.name, "params": dict(s.params)} for d, s in verifiers.specs.items()
        }
        prov["verifier_params"] = verifiers.params_by_name
        prov["default_verifier"] = {
            "name": verifiers.default.name,
            "params": dict(verifiers.default.params),
        }
        tally = _Tally()
        with records_io.ShardWriter(
            out, shard_size, prefix=shard_prefix(process_index, process_count)
        ) as writer:
            for i in owned:
                for r in journal.read(i):
                    r["profile"]["provenance"] = prov
                    tally.add(r["profile"])
                    writer.write(r)
            faults.point("profile.before_commit")
            writer.commit()
    wall = time.perf_counter() - start
    stats = verifiers.stats.summary()
    # Outcome counts over every record (also those of an earlier, interrupted run); timings
    # cover the verifications of this run.
    stats["count"] = tally.rollouts
    stats["reasons"] = dict(tally.reasons.most_common())
    stats["mean_reward"] = tally.mean_sum / tally.candidates if tally.candidates else 0.0
    summary = {
        "process_index": process_index,
        "process_count": process_count,
        "candidates": tally.candidates,
        "rollouts": tally.rollouts,
        "generated_tokens": tally.tokens,
        "seconds_this_run": wall,
        "engine_seconds_this_run": engine_s,
        "verify_seconds_this_run": verify_s,
        "generated_tokens_this_run": tokens,
        "non_engine_time_fraction": (wall - engine_s) / wall if wall > 0 else 0.0,
        "zero_variance_fraction": tally.zero / tally.candidates if tally.candidates else 0.0,
        "mean_reward": tally.mean_sum / tally.candidates if tally.candidates else 0.0,
        "mean_reward_histogram": mean_reward_histogram(np.frombuffer(tally.means)),
        "verifier": stats,
        "skipped_candidates": dict(skipped or {}),
        "provenance": prov,
    }
    faults.point("profile.before_summary")
    atomic.write_json(summary_path, summary)
    faults.point("profile.summary_written")
    journal_path.unlink(missing_ok=True)
    return summary


def read_profiled(out_dir: str) -> list[dict]:
    """All profiled records of every process in `out_dir`, ordered by candidate id; checks that
    every process that started has finished."""
    out = Path(out_dir)
    tags = sorted(
        {
            m.group(1)
            for p in out.iterdir()
            if (m := re.match(r"^summary-(p\d{5}-of-\d{5})\.json$", p.name))
        }
    )
    journals = sorted(p.name for p in out.glob("journal-*.jsonl"))
    if journals:
        raise ValueError(f"{out_dir}: profiling unfinished ({', '.join(journals)} still present)")
    if not tags:
        raise ValueError(f"{out_dir}: no finished profiling output (no summary-*.json)")
    counts = {int(t.split("-of-")[1]) for t in tags}
    if len(counts) != 1 or len(tags) != counts.pop():
        raise ValueError(f"{out_dir}: not all processes finished: found {tags}")
    rows = [r for t in tags for r in records_io.read_records(out, prefix=f"profiled-{t}")]
    return sorted(rows, key=lambda r: r["id"])


def reprofile(
    pivots: Sequence[Mapping[str, Any]],
    engine: Any,
    decode: Callable[[Sequence[int]], str],
    verifiers: DomainVerifiers,
    cfg: ProfileConfig,
    lambda_diff: float = 0.6,
    round_index: int = 0,
) -> tuple[list[dict], list[bool]]:
    """Profile `pivots` again with the engine's *current* weights (the policy being trained).

    Returns the re-profiled records and, per pivot, whether it still carries GRPO signal under
    the selection rule (variance > 0 and mean < lambda_diff). The trainer calls this when the
    batch reward standard deviation collapses, and keeps only the pivots that still teach.
    `round_index` keeps the sampling seeds of successive rounds distinct.
    """
    n = cfg.candidates_per_call
    out: list[dict] = []
    for start in range(0, len(pivots), n):
        chunk_id = (round_index + 1) * 1_000_003 + start // n
        recs, _ = profile_chunk(pivots[start : start + n], engine, decode, verifiers, cfg, chunk_id)
        out.extend(recs)
    keep = [r["profile"]["variance"] > 0.0 and r["profile"]["mean"] < lambda_diff for r in out]
    return out, keep
