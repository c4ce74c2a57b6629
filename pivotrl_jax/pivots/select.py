"""Pivot selection (PivotRL Eq. 5): keep the candidates whose pi_0 outcomes are mixed.

    keep(s)  <=>  sigma^2(s) > 0  and  mu(s) < lambda_diff        (strict by default)

With `inclusive=True` the mean bound becomes mu(s) <= lambda_diff. Then, in order:
1. message pivots (expected action is a plain message) are down-sampled to a fraction, because a
   message is credited for any message and so is easy to exploit;
2. if more pivots remain than `budget`, the easiest (highest mu) are dropped first;
3. the kept pivots are split into train / validation by source trajectory (never by row), so
   turns of one trajectory never straddle the split.
Every decision is a deterministic function of ids, so a rerun selects the same pivots.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

from pivotrl_jax.pivots.stats import stable_unit


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    lambda_diff: float = 0.6  # the tool-use recipe's difficulty bound
    inclusive: bool = False  # mu <= lambda instead of mu < lambda
    min_variance: float = 0.0  # keep sigma^2 > min_variance
    message_fraction: float = 1.0  # fraction of message pivots kept (1.0 keeps all)
    budget: int = 0  # maximum pivots kept; 0 = no budget
    val_fraction: float = 0.0  # fraction of source trajectories held out for validation
    seed: int = 0  # salt for the down-sampling and split hashes

    def __post_init__(self):
        if not 0.0 <= self.message_fraction <= 1.0:
            raise ValueError(f"message_fraction must be in [0, 1], got {self.message_fraction}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")


@dataclasses.dataclass(frozen=True)
class SelectRow:
    """What selection needs to know about one profiled candidate."""

    id: str
    trajectory_id: str
    domain: str
    kind: str  # "tool_call" | "parallel" | "message"
    mean: float
    variance: float


@dataclasses.dataclass(frozen=True)
class Selection:
    train: tuple[str, ...]  # kept ids, in input order
    validation: tuple[str, ...]
    dropped: dict[str, str]  # id -> reason
    report: dict


DROP_REASONS = ("zero_variance", "too_easy", "message_downsampled", "over_budget")


def drop_reason(row: SelectRow, cfg: SelectConfig) -> str | None:
    """Why the variance/mean filter rejects `row`, or None when it is a pivot."""
    if not row.variance > cfg.min_variance:
        return "zero_variance"
    too_easy = row.mean > cfg.lambda_diff if cfg.inclusive else row.mean >= cfg.lambda_diff
    return "too_easy" if too_easy else None


def select(rows: Sequence[SelectRow], cfg: SelectConfig) -> Selection:
    dropped: dict[str, str] = {}
    kept: list[SelectRow] = []
    for row in rows:
        reason = drop_reason(row, cfg)
        if (
            reason is None
            and row.kind == "message"
            and stable_unit(row.id, f"message:{cfg.seed}") >= cfg.message_fraction
        ):
            reason = "message_downsampled"
        if reason is None:
            kept.append(row)
        else:
            dropped[row.id] = reason
    if cfg.budget and len(kept) > cfg.budget:
        # Easiest first out: highest mean, ties broken by a stable hash of the id.
        order = sorted(kept, key=lambda r: (-r.mean, stable_unit(r.id, f"budget:{cfg.seed}")))
        for row in order[: len(kept) - cfg.budget]:
            dropped[row.id] = "over_budget"
        kept = [r for r in kept if r.id not in dropped]
    val_ids = {
        r.id for r in kept if stable_unit(r.trajectory_id, f"split:{cfg.seed}") < cfg.val_fraction
    }
    train = tuple(r.id for r in kept if r.id not in val_ids)
    validation = tuple(r.id for r in kept if r.id in val_ids)
    return Selection(train, validation, dropped, build_report(rows, kept, dropped, cfg))


def build_report(
    rows: Sequence[SelectRow], kept: Sequence[SelectRow], dropped: dict[str, str], cfg: SelectConfig
) -> dict:
    reasons = collections.Counter(dropped.values())
    per_domain: dict[str, dict] = {}
    for row in rows:
        d = per_domain.setdefault(
            row.domain, {"candidates": 0, "kept": 0, "zero_variance": 0, "mean_sum": 0.0}
        )
        d["candidates"] += 1
        d["mean_sum"] += row.mean
        d["zero_variance"] += row.variance <= cfg.min_variance
    for row in kept:
        per_domain[row.domain]["kept"] += 1
    for d in per_domain.values():
        d["mean_reward"] = d.pop("mean_sum") / max(d["candidates"], 1)
        d["zero_variance_fraction"] = d["zero_variance"] / max(d["candidates"], 1)
    n = len(rows)
    return {
        "candidates": n,
        "kept": len(kept),
        "kept_fraction": len(kept) / n if n else 0.0,
        "dropped": {r: reasons.get(r, 0) for r in DROP_REASONS},
        "zero_variance_fraction": sum(r.variance <= cfg.min_variance for r in rows) / n if n else 0,
        "per_domain": per_domain,
        "config": dataclasses.asdict(cfg),
    }
