"""Session numbers: every task is a pure function of (domain, session).

The session appears in the system prompt ("Session 1234567."), so an environment state can be
rebuilt from the messages alone. Training sessions are even and evaluation sessions odd, so
SFT data and evaluation tasks never share a task, whatever seeds are used.
"""

from __future__ import annotations

import random
import re
from typing import Any

SPLITS = {"train": 0, "eval": 1}
_SESSION_RANGE = 5_000_000
_SESSION_RE = re.compile(r"\bSession (\d+)\.")


def session_ids(domain: str, split: str, n: int, seed: int) -> list[int]:
    """`n` distinct sessions for `split`, determined by (domain, split, seed)."""
    parity = SPLITS[split]
    rng = random.Random(f"sessions/{domain}/{split}/{seed}")
    seen: dict[int, None] = {}
    while len(seen) < n:
        seen.setdefault(2 * rng.randrange(_SESSION_RANGE) + parity)
    return list(seen)


def session_line(session: int) -> str:
    return f"Session {session}."


def task_rng(domain: str, session: int) -> random.Random:
    """The random stream a domain builds a task from."""
    return random.Random(f"task/{domain}/{session}")


def expert_rng(domain: str, session: int, seed: int) -> random.Random:
    """The random stream an expert draws its phrasing and action variants from."""
    return random.Random(f"expert/{domain}/{session}/{seed}")


def find_session(messages: list[dict[str, Any]]) -> int | None:
    """The session named in the first system message, or None."""
    for m in messages:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            found = _SESSION_RE.search(m["content"])
            return int(found.group(1)) if found else None
    return None
