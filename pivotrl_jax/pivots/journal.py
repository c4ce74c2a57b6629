"""An append-only JSONL journal of completed work units, safe against `kill -9` at any moment.

Each completed unit is one line `{"unit": i, "payload": ...}` written with a single `write` and
fsync'd. On reopening, a torn last line (no newline, or invalid JSON) is cut off, so the journal
holds exactly the units that finished; the job redoes the rest. Units must be deterministic
functions of their index for a resumed run to equal an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[int, Any] = {}
        self._recover()
        self._f = open(self.path, "ab")  # noqa: SIM115 - held open for the journal's lifetime

    def _recover(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            try:
                entry = json.loads(data[pos:nl])
                self.done[int(entry["unit"])] = entry["payload"]
            except (ValueError, KeyError, TypeError):
                break
            pos = good_end = nl + 1
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def append(self, unit: int, payload: Any) -> None:
        line = json.dumps({"unit": unit, "payload": payload}, ensure_ascii=False) + "\n"
        self._f.write(line.encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())
        self.done[unit] = payload

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
