"""Records on disk: JSON dicts in ArrayRecord shards, written atomically.

A folder holds `<prefix>-00000-of-00003.array_record`, ... Shards are written under
temporary names and renamed only when every shard is complete. On commit the older shards of
the same prefix are removed first, then the new ones renamed in index order, so a crash at any
moment leaves either a whole set (old or new) or one with an index missing, which
`shard_paths` refuses: a set that looks whole is never a mix of two writes.
Every stage (extraction, profiling, selection) uses the same `write_records` /
`read_records`; a record is any JSON-serialisable dict (by convention with `schema_version`).
On disk a record is its JSON text, except that token-id lists (`ARRAY_FIELDS`) are packed as
int32 after it (see `encode`); `read_records` gives back the same dict.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from array_record.python import array_record_module

from pivotrl_jax import faults
from pivotrl_jax.errors import InputError

SUFFIX = ".array_record"
DEFAULT_SHARD_SIZE = 1000


# Token-id lists are stored as raw int32 after the JSON text: decoding a few thousand Python
# ints costs more than everything else in a record, and the loader wants arrays anyway.
#   packed record = MAGIC | u32 json length | JSON (with "__arrays__": [[key, n], ...]) | int32s
# JSON text never starts with a NUL byte, so plain-JSON records stay readable.
ARRAY_FIELDS = ("prompt_ids", "completion_ids")
MAGIC = b"\x00PR1"
_INT32 = np.dtype("<i4")


def _packable(v: Any) -> bool:
    if not isinstance(v, list | tuple | np.ndarray):
        return False
    a = np.asarray(v)
    return a.ndim == 1 and (
        a.size == 0 or (a.dtype.kind in "iu" and a.min() >= -(2**31) and a.max() < 2**31)
    )


def encode(record: dict[str, Any]) -> bytes:
    """A record as bytes: JSON, with `ARRAY_FIELDS` holding integer lists packed as int32."""
    packed = [k for k in ARRAY_FIELDS if _packable(record.get(k))]
    if not packed:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    arrays = [np.asarray(record[k], _INT32) for k in packed]
    rest = {k: v for k, v in record.items() if k not in packed}
    rest["__arrays__"] = [[k, int(a.size)] for k, a in zip(packed, arrays)]
    text = json.dumps(rest, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"".join([MAGIC, len(text).to_bytes(4, "little"), text, *(a.tobytes() for a in arrays)])


def decode(raw: bytes, arrays: str = "list") -> dict[str, Any]:
    """Bytes -> record; packed fields come back as lists, or as int32 arrays ([n]) when
    `arrays="numpy"`."""
    if not raw.startswith(MAGIC):
        return orjson.loads(raw)
    n = int.from_bytes(raw[4:8], "little")
    record = orjson.loads(raw[8 : 8 + n])
    offset = 8 + n
    for key, size in record.pop("__arrays__"):
        a = np.frombuffer(raw, _INT32, size, offset)
        record[key] = a if arrays == "numpy" else a.tolist()
        offset += 4 * size
    return record


def _final_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{SUFFIX}"


class ShardWriter:
    """Writes records into shards of `shard_size` under temporary names; `commit()` renames.

    Used as a context manager, an exception aborts (removes the temporary shards).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        shard_size: int = DEFAULT_SHARD_SIZE,
        prefix: str = "records",
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.prefix = shard_size, prefix
        self.count = 0
        self._temps: list[Path] = []
        self._writer = None
        self._in_shard = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            tmp = self.dir / f".{self.prefix}-{len(self._temps):05d}{SUFFIX}.tmp"
            self._temps.append(tmp)
            self._writer = array_record_module.ArrayRecordWriter(str(tmp), "group_size:1")
            self._in_shard = 0
        self._writer.write(encode(record))
        self.count += 1
        self._in_shard += 1
        if self._in_shard == self.shard_size:
            self._close_current()

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            faults.point("records.shard_closed")

    def commit(self) -> list[Path]:
        """Remove the older shards of this prefix, then rename the new ones into place."""
        self._close_current()
        n = len(self._temps)
        finals = [self.dir / _final_name(self.prefix, i, n) for i in range(n)]
        for old in shard_paths(self.dir, self.prefix, check_complete=False):
            os.unlink(old)
            faults.point("records.old_removed")
        for tmp, final in zip(self._temps, finals):
            os.replace(tmp, final)
            faults.point("records.renamed")
        for stale in self.dir.glob(f".{glob.escape(self.prefix)}-*{SUFFIX}.tmp"):
            stale.unlink(missing_ok=True)  # left by a writer that was killed
        self._temps = []
        return finals

    def abort(self) -> None:
        self._close_current()
        for tmp in self._temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._temps = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_records(
    out_dir: str | os.PathLike,
    records: Iterable[dict[str, Any]],
    shard_size: int = DEFAULT_SHARD_SIZE,
    prefix: str = "records",
) -> list[Path]:
    """Write all `records` atomically; returns the shard paths in order."""
    with ShardWriter(out_dir, shard_size, prefix) as w:
        for r in records:
            w.write(r)
        return w.commit()


def shard_paths(
    in_dir: str | os.PathLike, prefix: str = "records", check_complete: bool = True
) -> list[str]:
    """The shard files of `prefix` in `in_dir`, in order; checks that none is missing."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d{{5}})-of-(\d{{5}}){re.escape(SUFFIX)}$")
    try:
        names = sorted(os.listdir(in_dir))
    except FileNotFoundError:
        raise InputError("folder not found", path=in_dir, reason="missing_file") from None
    except NotADirectoryError:
        raise InputError("not a folder of record shards", path=in_dir, reason="bad_shard") from None
    found = []
    for name in names:
        m = pattern.match(name)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), str(Path(in_dir) / name)))
    if check_complete and found:
        counts = {n for _, n, _ in found}
        if len(counts) != 1 or [i for i, _, _ in found] != list(range(counts.pop())):
            names = ", ".join(Path(p).name for *_, p in found)
            raise InputError(
                f"incomplete or mixed shard set ({names}): a write was interrupted; run the "
                "command that writes it again",
                path=in_dir,
                reason="incomplete_shards",
            )
    return [p for *_, p in found]


def shard_prefixes(in_dir: str | os.PathLike) -> list[str]:
    """The prefixes of the shard sets in `in_dir`, sorted."""
    pattern = re.compile(rf"^(.+)-\d{{5}}-of-\d{{5}}{re.escape(SUFFIX)}$")
    return sorted({m.group(1) for name in os.listdir(in_dir) if (m := pattern.match(name))})


def open_shard(path: str | os.PathLike, options: str = "") -> Any:
    """An ArrayRecordReader of `path`; a damaged or empty file is an InputError naming it
    (the writer never leaves a shard without records)."""
    try:
        reader = array_record_module.ArrayRecordReader(str(path), *([options] if options else []))
        n = reader.num_records()
    except (RuntimeError, OSError) as e:
        raise InputError(f"damaged record shard: {e}", path=path, reason="bad_shard") from None
    if n == 0:
        with contextlib.suppress(RuntimeError):
            reader.close()
        raise InputError("damaged record shard: it holds no record", path=path, reason="bad_shard")
    return reader


def decode_at(raw: bytes, path: str | os.PathLike, index: int, arrays: str = "list") -> dict:
    """`decode` with failures located: record `index` (0-based) of shard `path`, reported as
    `path:<index + 1>`."""
    try:
        record = decode(raw, arrays)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise InputError(
            f"record is not readable ({type(e).__name__}: {e})",
            path=path,
            line=index + 1,
            reason="bad_record",
        ) from None
    if not isinstance(record, dict):
        raise InputError(
            f"record is a JSON {type(record).__name__}, not an object",
            path=path,
            line=index + 1,
            reason="bad_record",
        )
    return record


def read_shard(path: str | os.PathLike) -> Iterator[bytes]:
    """The raw records of one shard, in order."""
    reader = open_shard(path)
    try:
        yield from reader.read_all()
    except RuntimeError as e:
        raise InputError(f"damaged record shard: {e}", path=path, reason="bad_shard") from None
    finally:
        reader.close()


def read_records(in_dir: str | os.PathLike, prefix: str = "records") -> Iterator[dict[str, Any]]:
    """Every record of every shard of `prefix` in `in_dir`, in write order; a damaged shard or
    record is an InputError naming the shard (and the record number)."""
    for path in shard_paths(in_dir, prefix):
        for i, raw in enumerate(read_shard(path)):
            yield decode_at(raw, path, i)


def count_records(in_dir: str | os.PathLike, prefix: str = "records") -> int:
    total = 0
    for path in shard_paths(in_dir, prefix):
        reader = open_shard(path)
        total += reader.num_records()
        reader.close()
    return total
