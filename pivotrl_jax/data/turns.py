"""SFT trajectory -> candidates: every assistant turn is one (PivotRL Eq. 3).

For the k-th assistant message of trajectory `tid`, the candidate `tid:k` has state = every
message before it (with the trajectory's tools) and expected action = that message: one tool
call, several parallel calls, or a plain message. Options filter the turns:

- `kinds`: which action kinds to keep (`tool_call`, `parallel`, `message`);
- `drop_tool_errors`: drop call turns whose tool result matches `tool_error_pattern`;
- `message_fraction`: keep this fraction of message turns, chosen by a hash of the id, so
  the choice does not depend on input order.

Skipped turns are counted per reason.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
from collections.abc import Mapping

from pivotrl_jax.data.schema import KIND_MESSAGE, KINDS, Candidate, Message, Trajectory

DEFAULT_TOOL_ERROR_PATTERN = r'^\s*(\{\s*"error"\s*:|error\b|traceback\b|exception\b)'


@dataclasses.dataclass(frozen=True)
class TurnOptions:
    kinds: tuple[str, ...] = KINDS
    drop_tool_errors: bool = False
    tool_error_pattern: str = DEFAULT_TOOL_ERROR_PATTERN  # matched case-insensitively
    message_fraction: float = 1.0
    seed: int = 0
    default_domain: str = "default"
    domain: str | None = None  # forces this domain on every candidate
    verifiers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # domain -> name
    default_verifier: str = "tool_call"

    def __post_init__(self):
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not 0.0 <= self.message_fraction <= 1.0:
            raise ValueError(f"message_fraction must be in [0, 1], got {self.message_fraction}")

    def verifier_for(self, domain: str) -> str:
        return self.verifiers.get(domain, self.default_verifier)

    def domain_of(self, trajectory_domain: str | None) -> str:
        return self.domain or trajectory_domain or self.default_domain


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def candidate_skip_reason(c: Candidate, opts: TurnOptions, results: list[Message]) -> str | None:
    """Why `c` is not kept, or None. `results` are the tool messages answering its calls."""
    if c.kind not in opts.kinds:
        return f"kind_{c.kind}_not_kept"
    if opts.drop_tool_errors and any(
        re.search(opts.tool_error_pattern, m.content, re.IGNORECASE) for m in results
    ):
        return "tool_error"
    if c.kind == KIND_MESSAGE and unit_hash(opts.seed, "message", c.id) >= opts.message_fraction:
        return "message_downsampled"
    return None


def trajectory_candidates(
    traj: Trajectory, opts: TurnOptions, skipped: collections.Counter
) -> list[Candidate]:
    """The kept candidates of `traj` in turn order; skip reasons are counted into `skipped`."""
    domain = opts.domain_of(traj.domain)
    out = []
    turn = 0
    for i, msg in enumerate(traj.messages):
        if msg.role != "assistant":
            continue
        c = Candidate(
            id=f"{traj.id}:{turn}",
            trajectory_id=traj.id,
            turn_index=turn,
            domain=domain,
            verifier=opts.verifier_for(domain),
            state=traj.messages[:i],
            action=msg,
            tools=traj.tools,
            metadata=traj.metadata,
            source=traj.source,
        )
        turn += 1
        call_ids = {call.id for call in msg.tool_calls}
        results = [
            m for m in traj.messages[i + 1 :] if m.role == "tool" and m.tool_call_id in call_ids
        ]
        reason = candidate_skip_reason(c, opts, results)
        if reason is None:
            out.append(c)
        else:
            skipped[reason] += 1
    return out
