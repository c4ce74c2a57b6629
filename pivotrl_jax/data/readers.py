"""Input files -> trajectories (OpenAI chat rows) or candidates (public pivot rows).

Row formats are registered by name; `auto` picks one per row by its keys (`messages` ->
`openai_chat`, `responses_create_params` -> `pivot_rows`). With `on_error="fail"` the first
bad row raises its located `InputError`; with `on_error="skip"` bad rows are counted per
reason in the `ReadReport` and reading goes on.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pivotrl_jax.data import openai_chat, pivot_rows, sources
from pivotrl_jax.data.schema import Candidate, Trajectory
from pivotrl_jax.errors import InputError
from pivotrl_jax.registry import Registry

ON_ERROR = ("fail", "skip")


@dataclasses.dataclass(frozen=True)
class RowContext:
    """What a row parser needs besides the row: defaults for rows that lack provenance."""

    default_domain: str = "default"
    verifier_for: Callable[[str], str] = lambda domain: "tool_call"


RowParser = Callable[[Mapping[str, Any], str, int, RowContext], Trajectory | Candidate]
ROW_FORMATS: Registry[RowParser] = Registry("input row format")
ROW_FORMATS.register(
    "openai_chat", lambda row, path, line, ctx: openai_chat.parse_trajectory(row, path, line)
)
ROW_FORMATS.register(
    "pivot_rows",
    lambda row, path, line, ctx: pivot_rows.row_to_candidate(
        row, path, line, ctx.default_domain, ctx.verifier_for
    ),
)
_DETECT_KEYS = (("messages", "openai_chat"), ("responses_create_params", "pivot_rows"))


def detect_format(row: Mapping[str, Any], path: str, line: int) -> str:
    for key, name in _DETECT_KEYS:
        if key in row:
            return name
    keys = " or ".join(repr(k) for k, _ in _DETECT_KEYS)
    raise InputError(f"row has neither {keys}", path=path, line=line, reason="unknown_format")


@dataclasses.dataclass
class ReadReport:
    rows: int = 0  # rows read, good and bad
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list[str] = dataclasses.field(default_factory=list)  # first few error messages

    def add_error(self, e: InputError, keep: int = 20) -> None:
        self.skipped[e.reason] += 1
        if len(self.examples) < keep:
            self.examples.append(str(e))


def read_inputs(
    paths: Sequence[str | os.PathLike],
    *,
    row_format: str = "auto",
    source: str = "auto",
    max_line_bytes: int = sources.DEFAULT_MAX_LINE_BYTES,
    on_error: str = "fail",
    context: RowContext = RowContext(),
    report: ReadReport | None = None,
) -> Iterator[Trajectory | Candidate]:
    """Yields the parsed rows of every file in order; counts into `report` when given."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    report = ReadReport() if report is None else report
    seen_ids: dict[str, str] = {}
    for path in paths:
        for row in sources.read_rows(path, source, max_line_bytes):
            report.rows += 1
            try:
                if row.error is not None:
                    raise row.error
                name = row_format
                if name == "auto":
                    name = detect_format(row.value, row.path, row.line)
                item = ROW_FORMATS.get(name)(row.value, row.path, row.line, context)
                key = item.id
                if key in seen_ids:
                    raise InputError(
                        f"duplicate id {key!r} (first at {seen_ids[key]})",
                        path=row.path,
                        line=row.line,
                        field="id",
                        reason="duplicate_id",
                    )
                seen_ids[key] = f"{row.path}:{row.line}"
            except InputError as e:
                if on_error == "fail":
                    raise
                report.add_error(e)
                continue
            yield item
