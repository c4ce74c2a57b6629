"""The run's host-side bookkeeping beyond the TrainState: re-profiling progress, checkpoint
metadata (exact resume) and the stop rule for non-finite updates.

Exact resume: the checkpoint holds the TrainState, the data iterator's state, the weight
version and `Progress`; sampling seeds derive from (seed, iteration), so a resumed run draws the
same rollouts as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from pivotrl_jax.pivots.stats import stable_seed


class TrainingDiverged(RuntimeError):
    """Too many non-finite updates: the run stops (its last checkpoint is finite)."""


@dataclasses.dataclass
class Progress:
    """Host-side loop state beyond the TrainState; saved in the checkpoint's meta."""

    low_std: int = 0  # consecutive batches with reward std below reprofile_std_below
    recent: list[dict] = dataclasses.field(default_factory=list)  # those batches' pivots
    excluded: set[str] = dataclasses.field(default_factory=set)  # ids re-profiling dropped
    rounds: int = 0  # re-profiling rounds so far

    def to_json(self) -> dict[str, Any]:
        return {
            "low_std": self.low_std,
            "recent": self.recent,
            "excluded": sorted(self.excluded),
            "rounds": self.rounds,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Progress:
        return cls(d["low_std"], list(d["recent"]), set(d["excluded"]), d["rounds"])


def jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A pivot record with numpy arrays as lists (it goes into the checkpoint's JSON meta)."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


def checkpoint_meta(data: Any, version: int, iteration: int, progress: Progress) -> dict:
    """What a checkpoint stores beside the TrainState."""
    return {
        "data_state": data.get_state(),
        "weight_version": version,
        "iteration": iteration,
        "progress": progress.to_json(),
    }


def check_finite(nonfinite: int, limit: int, iteration: int, last_checkpoint: int | None) -> None:
    """Raise TrainingDiverged once more than `limit` updates were skipped as non-finite."""
    if nonfinite > limit:
        raise TrainingDiverged(
            f"{nonfinite} non-finite updates (limit {limit}) by iteration {iteration}; "
            f"the last checkpoint is step {last_checkpoint}"
        )


def track_reward_std(progress: Progress, std: float, threshold: float) -> None:
    """Count consecutive low-std batches; a batch above the threshold resets the window."""
    low = std < threshold
    progress.low_std = progress.low_std + 1 if low else 0
    if not low:
        progress.recent = []


def reprofile_recent(parts: Any, it: int) -> dict[str, float]:
    """Re-profile the pivots of the low-std batches with the current weights (pivots.profile)
    and exclude those without GRPO signal any more (variance 0 or mean >= lambda_diff)."""
    from pivotrl_jax.pivots.profile import ProfileConfig, reprofile

    cfg, prog = parts.cfg, parts.progress
    r = cfg.rollout
    pcfg = ProfileConfig(
        k=r.group_size,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        max_new_tokens=r.max_new_tokens,
        candidates_per_call=cfg.pivots_per_step,
        seed=stable_seed(cfg.seed, "reprofile", it),
        verifier_time_limit_s=cfg.verifier_time_limit_s,
        score_truncated=cfg.score_truncated,
    )
    unique = list({rec["id"]: rec for rec in prog.recent}.values())
    _, keep = reprofile(
        unique,
        parts.engine,
        parts.decode,
        parts.scorer,
        pcfg,
        lambda_diff=cfg.reprofile_lambda_diff,
        round_index=prog.rounds,
    )
    dropped = {rec["id"] for rec, k in zip(unique, keep) if not k}
    prog.excluded |= dropped
    prog.rounds += 1
    prog.low_std, prog.recent = 0, []
    return {
        "reprofile/profiled": float(len(unique)),
        "reprofile/excluded": float(len(dropped)),
        "reprofile/excluded_total": float(len(prog.excluded)),
    }
