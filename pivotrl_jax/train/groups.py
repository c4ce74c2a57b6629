"""One rollout batch on the host: sampling settings, verifier rewards [P, G], group advantages
(zero-variance groups dropped, counted) and the kept samples as trainer sequences."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from pivotrl_jax.pivots.profile import score_completion
from pivotrl_jax.pivots.stats import stable_seed
from pivotrl_jax.rollout.base import Completion, SamplingParams
from pivotrl_jax.train.advantages import flat_advantages, zero_variance_groups
from pivotrl_jax.train.batching import Sequence as Seq
from pivotrl_jax.train.grpo_config import GrpoConfig


def sampling_params(
    cfg: GrpoConfig, stop_ids: Sequence[int], stream: str, it: int
) -> SamplingParams:
    """The rollout sampling settings of iteration `it`, seeded by (seed, stream, it)."""
    r = cfg.rollout
    return SamplingParams(
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        max_new_tokens=r.max_new_tokens,
        stop_token_ids=tuple(stop_ids),
        seed=stable_seed(cfg.seed, stream, it),
    )


def score_groups(
    records: Sequence[Mapping[str, Any]],
    groups: Sequence[Sequence[Completion]],
    decode: Callable[[Sequence[int]], str],
    scorer: Any,
    verifier_for_all: str,
    time_limit_s: float,
    score_truncated: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(rewards [P, G], verifier errors [P, G] bool) for each completion of each pivot, scored by
    `score_completion` (a completion cut at max_new_tokens earns 0 unless `score_truncated`)."""
    rewards = np.zeros((len(groups), len(groups[0])), np.float32)
    errors = np.zeros(rewards.shape, bool)
    for p, (rec, comps) in enumerate(zip(records, groups, strict=True)):
        if verifier_for_all:
            rec = {**rec, "verifier": verifier_for_all, "domain": ""}
        for g, comp in enumerate(comps):
            reward, reason = score_completion(
                scorer, rec, comp, decode, time_limit_s, score_truncated
            )
            rewards[p, g] = reward
            errors[p, g] = reason.startswith("error") or reason == "timeout"
    return rewards, errors


def group_advantages(
    cfg: GrpoConfig, rewards: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rewards [P, G] -> (groups with variance > 0 [P], groups kept [P], advantages [P, G])."""
    nonzero = np.asarray(zero_variance_groups(jnp.asarray(rewards))[0])
    keep = nonzero if cfg.drop_zero_variance else np.ones(rewards.shape[0], bool)
    adv = flat_advantages(
        cfg.advantage,
        jnp.asarray(rewards.reshape(-1)),
        rewards.shape[1],
        eps=cfg.advantage_eps,
        ddof=cfg.advantage_ddof,
    )
    return nonzero, keep, np.asarray(adv).reshape(rewards.shape)


def group_sequences(
    prompts: Sequence[Sequence[int]],
    groups: Sequence[Sequence[Completion]],
    advantages: np.ndarray,  # [P, G]
    keep: np.ndarray,  # [P] bool
) -> list[Seq]:
    """The kept groups' completions as trainer sequences (empty completions carry no token)."""
    out = []
    for p in np.flatnonzero(keep):
        prompt = tuple(int(t) for t in prompts[p])
        for g, comp in enumerate(groups[p]):
            if comp.token_ids:
                advantage = float(advantages[p, g])
                routed = comp.routed_experts
                out.append(Seq(prompt, comp.token_ids, comp.logprobs, advantage, None, routed))
    return out
