"""Held-out turn acceptance: the turn-level skill PivotRL trains, measured where it was not trained.

The items are the expert's turns on evaluation sessions (tasks never used for training): at
each, the model acts once, greedily, from the expert's history, and the domain's functional
verifier scores the action against the expert's. The per-turn rewards are returned, in a fixed
order, so two models are compared on the very same turns (`stats.paired_difference`).

    rows = heldout_trajectories(("terminal",), 400, seed=1)     # expert trajectories
    # -> `pivotrl extract` them into candidate records, then:
    rewards = turn_rewards(engine, tok, candidates, verifiers, max_new_tokens=48)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotrl_jax.envs import generate_tasks
from pivotrl_jax.envs.sft import trajectory
from pivotrl_jax.pivots.profile import DomainVerifiers, ProfileConfig, profile_chunk
from pivotrl_jax.rollout.text import completion_text


def heldout_trajectories(domains: Sequence[str], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` expert trajectories per domain on evaluation sessions."""
    return [trajectory(task, seed) for d in domains for task in generate_tasks(d, n, seed, "eval")]


def turn_rewards(
    engine: Any,
    tokenizer: Any,
    candidates: Sequence[dict[str, Any]],
    verifiers: DomainVerifiers,
    max_new_tokens: int,
    batch: int = 64,
    progress: bool = False,
) -> list[float]:
    """The verifier's reward for one greedy action of the engine's current weights at each
    candidate turn, in the candidates' order."""
    from tqdm import tqdm

    cfg = ProfileConfig(
        k=1, temperature=0.0, max_new_tokens=max_new_tokens, candidates_per_call=batch
    )
    stop = (tokenizer.eos_token_id,)
    rewards: list[float] = []
    starts = range(0, len(candidates), batch)
    for start in tqdm(starts, desc="held-out turns", disable=not progress, leave=False):
        recs, _ = profile_chunk(
            candidates[start : start + batch],
            engine,
            lambda ids: completion_text(tokenizer, ids, stop),
            verifiers,
            cfg,
            start,
        )
        rewards += [r["profile"]["mean"] for r in recs]
    return rewards
