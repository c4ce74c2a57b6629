"""A verdict cache for the judge: an in-memory LRU, optionally mirrored to a JSONL file.

Keys are SHA-256 digests of the canonical request (model, messages, sampling settings), so the
same question is asked once per process, and once ever with a file. The file holds one
`{"key": ..., "verdict": ...}` per line, appended as verdicts arrive; a later process loads it.
Lines that do not parse are skipped (a run killed mid-write leaves at most one).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict


def request_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class VerdictCache:
    def __init__(self, max_size: int = 4096, path: str | os.PathLike | None = None):
        self.max_size = max_size
        self.path = None if path is None else os.fspath(path)
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if self.path is not None and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self._put(row["key"], row["verdict"])
                    except (ValueError, KeyError, TypeError):
                        continue

    def get(self, key: str) -> str | None:
        with self._lock:
            verdict = self._items.get(key)
            if verdict is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return verdict

    def put(self, key: str, verdict: str) -> None:
        with self._lock:
            self._put(key, verdict)
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "verdict": verdict}) + "\n")

    def _put(self, key: str, verdict: str) -> None:
        self._items[key] = verdict
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
