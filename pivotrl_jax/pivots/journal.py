"""An append-only JSONL journal of completed work units, safe against `kill -9` at any moment.

Each completed unit is one line `{"unit": i, "payload": ...}` written with a single `write` and
fsync'd. On reopening, a torn last line (no newline, or invalid JSON) is cut off, so the journal
holds exactly the units that finished; the job redoes the rest. Units must be deterministic
functions of their index for a resumed run to equal an uninterrupted one.

Only the units' byte offsets stay in memory (`done`); `read(unit)` fetches a payload from disk,
so a journal of any size costs a few bytes of memory per unit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pivotrl_jax import faults


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[int, tuple[int, int]] = {}  # unit -> (offset, length) of its line
        self._recover()
        self._f = open(self.path, "ab")  # noqa: SIM115 - held open for the journal's lifetime
        self._end = self._f.seek(0, os.SEEK_END)

    def _recover(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    entry = json.loads(line)
                    unit = int(entry["unit"])
                    if "payload" not in entry:  # a line without one is not ours
                        break
                except (ValueError, KeyError, TypeError):
                    break
                self.done[unit] = (good_end, len(line))
                good_end += len(line)
        if good_end < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def append(self, unit: int, payload: Any) -> None:
        line = (json.dumps({"unit": unit, "payload": payload}, ensure_ascii=False) + "\n").encode()
        self._f.write(line)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.done[unit] = (self._end, len(line))
        self._end += len(line)
        faults.point("journal.appended")

    def read(self, unit: int) -> Any:
        """The payload of a finished unit."""
        offset, length = self.done[unit]
        with open(self.path, "rb") as f:
            f.seek(offset)
            return json.loads(f.read(length))["payload"]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
