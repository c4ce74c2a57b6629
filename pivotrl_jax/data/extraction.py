"""One extraction run: input files -> candidates on disk, plus a manifest of what happened.

    read rows ──> trajectories ──turns──> candidates ──(tokenizer)──> prompt/completion ids
              └─> pivot rows ──────────────────┘        (length limit, token-exact check)
                                                                   │
                           ArrayRecord shards  or  pivot_rows.jsonl  +  manifest.json

Nothing is renamed into place until every input has been read, so a run that stops on a bad
row (`on_error="fail"`) leaves no output behind.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pivotrl_jax import atomic, faults
from pivotrl_jax.data import chat, pivot_rows, readers, records, sources
from pivotrl_jax.data.schema import SCHEMA_VERSION, Candidate, Trajectory
from pivotrl_jax.data.turns import TurnOptions, candidate_skip_reason, trajectory_candidates

OUTPUT_FORMATS = ("records", "pivot_rows")
TRUNCATION = ("drop", "left")
MANIFEST_NAME = "manifest.json"
PIVOT_ROWS_NAME = "pivot_rows.jsonl"


@dataclasses.dataclass(frozen=True)
class ExtractOptions:
    turns: TurnOptions = dataclasses.field(default_factory=TurnOptions)
    row_format: str = "auto"  # auto | openai_chat | pivot_rows
    source: str = "auto"  # auto | jsonl | hf
    on_error: str = "fail"  # fail | skip
    max_line_bytes: int = sources.DEFAULT_MAX_LINE_BYTES
    output_format: str = "records"
    shard_size: int = records.DEFAULT_SHARD_SIZE
    max_prompt_tokens: int = 0  # 0: no limit; needs a tokenizer
    truncation: str = "drop"  # what to do with longer prompts: drop, or left-truncate
    drop_token_mismatch: bool = False

    def __post_init__(self):
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}"
            )
        if self.truncation not in TRUNCATION:
            raise ValueError(f"truncation must be one of {TRUNCATION}, got {self.truncation!r}")
        if self.max_prompt_tokens < 0:
            raise ValueError(f"max_prompt_tokens must be >= 0, got {self.max_prompt_tokens}")


class _Tally:
    """Counts kept candidates per domain and kind, skipped turns, and the token check."""

    def __init__(self):
        self.kept = collections.defaultdict(collections.Counter)
        self.skipped_turns = collections.Counter()
        self.truncated = 0
        self.token = collections.Counter()
        self.mismatches: list[dict[str, Any]] = []

    def mismatch(self, c: Candidate, at: int, keep: int = 20) -> None:
        self.token["mismatch"] += 1
        if len(self.mismatches) < keep:
            self.mismatches.append({"id": c.id, "first_difference": at})


def _tokenize(
    c: Candidate,
    tokenizer: Any,
    opts: ExtractOptions,
    conversation: list[int] | None,
    tally: _Tally,
) -> Candidate | None:
    """Adds token ids (and applies the length limit); None when the candidate is dropped."""
    if opts.max_prompt_tokens:
        ids = chat.prompt_ids(tokenizer, c.state, c.tools)
        if len(ids) > opts.max_prompt_tokens:
            fitted = (
                chat.truncate_left(tokenizer, c, opts.max_prompt_tokens)
                if opts.truncation == "left"
                else None
            )
            if fitted is None:
                tally.skipped_turns["prompt_too_long"] += 1
                return None
            c, conversation = fitted[0], None
            tally.truncated += 1
    t = chat.tokenize_candidate(tokenizer, c, conversation)
    tally.token["checked"] += 1
    if t.mismatch_at is not None:
        tally.mismatch(c, t.mismatch_at)
        if opts.drop_token_mismatch:
            tally.skipped_turns["token_mismatch"] += 1
            return None
    else:
        tally.token["exact"] += 1
    return chat.with_tokens(c, t)


def _candidates(
    item: Trajectory | Candidate, turns: TurnOptions, skipped: collections.Counter
) -> list[Candidate]:
    if isinstance(item, Trajectory):
        return trajectory_candidates(item, turns, skipped)
    if turns.domain:
        item = dataclasses.replace(
            item, domain=turns.domain, verifier=turns.verifier_for(turns.domain)
        )
    reason = candidate_skip_reason(item, turns, results=[])
    if reason is not None:
        skipped[reason] += 1
        return []
    return [item]


class _PivotRowWriter:
    """Writes `pivot_rows.jsonl` under a temporary name; `commit` renames it into place."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / PIVOT_ROWS_NAME
        self._ctx = atomic.atomic_open(self.path, "w", encoding="utf-8")
        self._f = self._ctx.__enter__()
        self.count = 0

    def write(self, c: Candidate) -> None:
        self._f.write(json.dumps(pivot_rows.candidate_to_row(c), ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self) -> list[Path]:
        self._ctx.__exit__(None, None, None)
        return [self.path]

    def abort(self, exc: BaseException) -> None:
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file


class _RecordWriter:
    def __init__(self, out_dir: Path, shard_size: int):
        self._w = records.ShardWriter(out_dir, shard_size, prefix="candidates")
        self.count = 0

    def write(self, c: Candidate) -> None:
        self._w.write(c.to_record())
        self.count += 1

    def commit(self) -> list[Path]:
        return self._w.commit()

    def abort(self, exc: BaseException) -> None:
        self._w.abort()


def extract(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    opts: ExtractOptions = ExtractOptions(),
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Run one extraction; returns (and writes) the manifest."""
    if opts.max_prompt_tokens and tokenizer is None:
        raise ValueError("max_prompt_tokens needs a tokenizer")
    start = time.perf_counter()
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    report = readers.ReadReport()
    tally = _Tally()
    kinds_read = collections.Counter()
    context = readers.RowContext(opts.turns.default_domain, opts.turns.verifier_for)
    items = readers.read_inputs(
        inputs,
        row_format=opts.row_format,
        source=opts.source,
        max_line_bytes=opts.max_line_bytes,
        on_error=opts.on_error,
        context=context,
        report=report,
    )
    writer = (
        _PivotRowWriter(out)
        if opts.output_format == "pivot_rows"
        else _RecordWriter(out, opts.shard_size)
    )
    try:
        for item in items:
            faults.point("extract.row")
            kinds_read[type(item).__name__] += 1
            conversation = None
            if tokenizer is not None and isinstance(item, Trajectory):
                conversation = chat.conversation_ids(tokenizer, item.messages, item.tools)
            for c in _candidates(item, opts.turns, tally.skipped_turns):
                if tokenizer is not None:
                    c = _tokenize(c, tokenizer, opts, conversation, tally)
                    if c is None:
                        continue
                writer.write(c)
                tally.kept[c.domain][c.kind] += 1
        paths = writer.commit()
    except BaseException as e:
        writer.abort(e)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "record_type": "candidate",
        "output_format": opts.output_format,
        "files": [p.name for p in paths],
        "inputs": [str(p) for p in inputs],
        "rows_read": report.rows,
        "trajectories": kinds_read["Trajectory"],
        "pivot_rows_read": kinds_read["Candidate"],
        "candidates": writer.count,
        "counts": {d: dict(sorted(k.items())) for d, k in sorted(tally.kept.items())},
        "skipped_rows": dict(sorted(report.skipped.items())),
        "skipped_turns": dict(sorted(tally.skipped_turns.items())),
        "error_examples": report.examples,
        "truncated": tally.truncated,
        "token_check": None
        if tokenizer is None
        else {
            "checked": tally.token["checked"],
            "exact": tally.token["exact"],
            "mismatch": tally.token["mismatch"],
            "examples": tally.mismatches,
        },
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    faults.point("extract.before_manifest")
    atomic.write_json(out / MANIFEST_NAME, manifest)
    return manifest
