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

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pivotrl_jax import atomic
from pivotrl_jax.data import records as records_io
from pivotrl_jax.errors import ConfigError
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
        """From config sections: `{domain: {"name", "params"}}` and `{verifier name: params}`."""
        specs = {}
        for domain, spec in verifiers.items():
            if "name" not in spec:
                raise ConfigError(f"verifiers.{domain} needs a 'name'")
            specs[domain] = VerifierSpec(spec["name"], dict(spec.get("params", {})))
        return cls(specs, params_by_name=params_by_name)

    def spec(self, candidate: Mapping[str, Any]) -> VerifierSpec:
        domain = candidate.get("domain") or ""
        if domain in self.specs:
            return self.specs[domain]
        name = candidate.get("verifier")
        if name:
            return VerifierSpec(name, self.params_by_name.get(name, {}))
        return self.default

    def score(self, candidate: Mapping[str, Any], completion_text: str, time_limit_s: float):
        spec = self.spec(candidate)
        key = (spec.name, tuple(sorted(spec.params.items())))
        if key not in self._built:
            self._built[key] = build_verifier(spec.name, **dict(spec.params))
        state = VerifyState(
            messages=tuple(candidate.get("messages", ())),
            tools=tuple(candidate.get("tools", ())),
            env=candidate.get("env"),
        )
        return run_verifier(
            self._built[key],
            state,
            parse_action(candidate["expected_action"]),
            parse_action(completion_text),
            time_limit_s=time_limit_s,
            stats=self.stats,
            name=spec.name,
        )


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
            res = verifiers.score(cand, decode(comp.token_ids), cfg.verifier_time_limit_s)
            rewards.append(res.reward)
            reasons.append(res.reason)
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
    candidates: Sequence[Mapping[str, Any]], chunk_size: int, process_index: int, process_count: int
) -> dict[int, list[Mapping[str, Any]]]:
    """{global chunk index: its candidates} of the chunks one process owns: the candidates cut
    into chunks of `chunk_size`, every `process_count`-th chunk from `process_index` on."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    starts = range(chunk_size * process_index, len(candidates), chunk_size * process_count)
    return {s // chunk_size: list(candidates[s : s + chunk_size]) for s in starts}


def mean_reward_histogram(means: Sequence[float], bins: int = 10) -> dict[str, list]:
    counts, edges = np.histogram(np.asarray(means, dtype=float), bins=bins, range=(0.0, 1.0))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def run_profile(
    candidates: Sequence[Mapping[str, Any]],
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
) -> dict[str, Any]:
    """Profile this process's slice of `candidates` into `out_dir`; resumable; returns the summary.

    Output: ArrayRecord shards `profiled-pIIIII-of-NNNNN-*` and `summary-pIIIII-of-NNNNN.json`
    (written last: its presence marks the slice complete). `journal-pIIIII-of-NNNNN.jsonl` holds
    finished chunks while the job runs and is removed at the end.
    """
    out = Path(out_dir)
    tag = f"p{process_index:05d}-of-{process_count:05d}"
    summary_path = out / summary_name(process_index, process_count)
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    chunks = process_chunks(candidates, cfg.candidates_per_call, process_index, process_count)
    missing = [c["id"] for chunk in chunks.values() for c in chunk if not c.get("prompt_ids")]
    if missing:
        raise ValueError(
            f"{len(missing)} candidates have no prompt_ids (first: {missing[0]!r}); extract them "
            "with a tokenizer (`pivotrl extract --tokenizer DIR`)"
        )
    start = time.perf_counter()
    engine_s = verify_s = 0.0
    tokens = 0
    with Journal(out / f"journal-{tag}.jsonl") as journal:
        total = sum(len(c) for c in chunks.values())
        bar = tqdm(total=total, desc=f"profile {tag}", unit="cand", disable=not progress)
        bar.update(sum(len(chunks[i]) for i in journal.done if i in chunks))
        for i, chunk in chunks.items():
            if i in journal.done:
                continue
            recs, timing = profile_chunk(chunk, engine, decode, verifiers, cfg, i)
            engine_s += timing["engine_s"]
            verify_s += timing["verify_s"]
            tokens += timing["tokens"]
            journal.append(i, recs)
            bar.update(len(chunk))
        bar.close()
        done = [r for i in chunks for r in journal.done[i]]
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
    for r in done:
        r["profile"]["provenance"] = prov
    records_io.write_records(
        out, done, shard_size=shard_size, prefix=shard_prefix(process_index, process_count)
    )
    wall = time.perf_counter() - start
    means = [r["profile"]["mean"] for r in done]
    zero = sum(1 for r in done if r["profile"]["variance"] == 0.0)
    summary = {
        "process_index": process_index,
        "process_count": process_count,
        "candidates": len(done),
        "rollouts": len(done) * cfg.k,
        "generated_tokens": sum(sum(r["profile"]["completion_tokens"]) for r in done),
        "seconds_this_run": wall,
        "engine_seconds_this_run": engine_s,
        "verify_seconds_this_run": verify_s,
        "non_engine_time_fraction": (wall - engine_s) / wall if wall > 0 else 0.0,
        "zero_variance_fraction": zero / len(done) if done else 0.0,
        "mean_reward": float(np.mean(means)) if means else 0.0,
        "mean_reward_histogram": mean_reward_histogram(means),
        "verifier": verifiers.stats.summary(),
        "provenance": prov,
    }
    atomic.write_json(summary_path, summary)
    (out / f"journal-{tag}.jsonl").unlink(missing_ok=True)
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
