"""Input files -> raw rows (JSON objects), each located by file and line.

Two sources, chosen by `source_for(path)` or by name:

- `jsonl`: one JSON object per line, read here so every failure names its line: lines over
  a byte limit, bytes that are not UTF-8, text that is not JSON, JSON that is not an object.
  Blank lines are skipped.
- `hf`: local Hugging Face dataset files read through `datasets` (Parquet, JSON/JSONL, or a
  folder written by `Dataset.save_to_disk`); the "line" is the 1-based row number. Arrow
  fills keys missing from a row with nulls, so nulls are dropped from nested objects, and
  columns stored as JSON strings (`messages`, `tools`, ...) are decoded.

A bad row is yielded as a `Row` with `error` set, so callers can skip it and go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pivotrl_jax.errors import InputError
from pivotrl_jax.registry import Registry

DEFAULT_MAX_LINE_BYTES = 16 << 20
_JSON_COLUMNS = ("messages", "tools", "metadata", "responses_create_params", "expected_action")


@dataclasses.dataclass(frozen=True)
class Row:
    path: str
    line: int
    value: dict[str, Any] | None = None
    error: InputError | None = None


SOURCES: Registry = Registry("input source")


def source_for(path: str | os.PathLike) -> str:
    """`hf` for Parquet files and dataset folders, `jsonl` otherwise."""
    p = Path(path)
    return "hf" if p.is_dir() or p.suffix in (".parquet", ".arrow") else "jsonl"


def read_rows(
    path: str | os.PathLike, source: str = "auto", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[Row]:
    if not Path(path).exists():
        raise InputError("input file not found", path=path, reason="missing_file")
    name = source_for(path) if source == "auto" else source
    return SOURCES.get(name)(str(path), max_line_bytes)


@SOURCES.register("jsonl")
def read_jsonl(path: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Row]:
    with open(path, "rb") as f:
        line = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            line += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw) + _skip_to_newline(f)
                yield _bad(
                    path,
                    line,
                    f"line is {size} bytes, over the limit of {max_line_bytes}",
                    "line_too_long",
                )
                continue
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            yield decode_json_line(raw, path, line)


def decode_json_line(raw: bytes, path: str, line: int) -> Row:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _bad(path, line, f"bytes that are not UTF-8 at byte offset {e.start}", "not_utf8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return _bad(path, line, f"not valid JSON: {e.msg} at column {e.colno}", "bad_json")
    if not isinstance(value, dict):
        return _bad(
            path, line, f"row is a JSON {type(value).__name__}, not an object", "not_object"
        )
    return Row(path, line, value=value)


@SOURCES.register("hf")
def read_hf(path: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Row]:
    del max_line_bytes  # rows are already parsed by Arrow
    import datasets  # deferred: heavy, and only this source needs it

    p = Path(path)
    try:
        if p.is_dir():
            ds = datasets.load_from_disk(path)
        else:
            builder = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}.get(
                p.suffix, "json"
            )
            ds = datasets.load_dataset(builder, data_files=path, split="train")
    except Exception as e:  # datasets / pyarrow raise many types for a damaged file or folder
        raise InputError(
            f"cannot read as a dataset: {type(e).__name__}: {str(e)[:300]}",
            path=path,
            reason="bad_file",
        ) from None
    for i, row in enumerate(ds):
        yield _decode_hf_row(row, path, i + 1)


def _decode_hf_row(row: dict[str, Any], path: str, line: int) -> Row:
    value = _drop_nulls(row)
    for key in _JSON_COLUMNS:
        if isinstance(value.get(key), str):
            try:
                value[key] = json.loads(value[key])
            except json.JSONDecodeError as e:
                return _bad(path, line, f"column is not valid JSON: {e.msg}", "bad_json", key)
    return Row(path, line, value=value)


def _drop_nulls(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _drop_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_nulls(v) for v in x]
    return x


def _skip_to_newline(f) -> int:
    skipped = 0
    while chunk := f.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _bad(path: str, line: int, message: str, reason: str, field: str | None = None) -> Row:
    return Row(
        path, line, error=InputError(message, path=path, line=line, field=field, reason=reason)
    )
