"""End-to-end multi-turn RL: whole episodes in the environment, outcome reward, the same GRPO.

The baseline PivotRL is measured against. Per iteration:

    P training tasks ─> G episodes each, run in lockstep with the current weights (one engine
    call per turn for every live episode) ─> outcome reward r = 1[task solved] per episode ─>
    group advantages over the G episodes of a task (zero-variance groups dropped, counted) ─>
    every assistant turn of an episode becomes a trainer sequence (prompt = the rendered history
    before the turn, response = the sampled tokens) carrying its episode's advantage ─> the
    same old / reference logprobs, update step and weight sync as turn-level GRPO
    (`update.update_on`).

Rollout cost is counted in assistant turns (`rollout/turns`), the unit the paper compares:
one PivotRL sample is one turn; one episode here is as many turns as it lasts.

Tasks come from `TaskStream`: the training sessions `envs.generate_tasks(domain, n, seed,
"train")`, the same sessions `envs.generate_sft(domain, n, seed)` turns into SFT trajectories,
cycled in a seeded order. Its state (a position) is saved in the checkpoint, so a resumed run
draws the same tasks and, with seeds from (seed, iteration), the same episodes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivotrl_jax.eval.episodes import run_episodes
from pivotrl_jax.eval.policy import EnginePolicy
from pivotrl_jax.rollout.base import Completion, SamplingParams
from pivotrl_jax.train import metrics as metrics_lib
from pivotrl_jax.train.batching import Sequence as Seq
from pivotrl_jax.train.groups import group_advantages, sampling_params
from pivotrl_jax.train.parts import Parts
from pivotrl_jax.train.update import update_on


class TaskStream:
    """An endless, seeded stream of training tasks in batches of `batch_size`.

    The pool is `generate_tasks(domain, per_domain, pool_seed, "train")` for each domain (the
    sessions of `generate_sft(domain, per_domain, pool_seed)`; `pool_seed` defaults to `seed`);
    each pass over it is shuffled by (seed, pass). `get_state` / `set_state` make it resumable
    like a grain iterator (the training loop checkpoints it).
    """

    def __init__(
        self,
        domains: Sequence[str],
        per_domain: int,
        seed: int,
        batch_size: int,
        pool_seed: int | None = None,
    ):
        from pivotrl_jax.envs import generate_tasks

        if not domains:
            raise ValueError("TaskStream needs at least one domain")
        if per_domain < 1 or batch_size < 1:
            raise ValueError("per_domain and batch_size must be >= 1")
        pool_seed = seed if pool_seed is None else pool_seed
        self.pool = [t for d in domains for t in generate_tasks(d, per_domain, pool_seed, "train")]
        self.seed = seed
        self.batch_size = batch_size
        self.position = 0

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.pool)))
        random.Random(f"tasks/{self.seed}/{epoch}").shuffle(order)
        return order

    def __iter__(self) -> TaskStream:
        return self

    def __next__(self) -> list[Any]:
        n = len(self.pool)
        out = []
        for k in range(self.position, self.position + self.batch_size):
            out.append(self.pool[self._order(k // n)[k % n]])
        self.position += self.batch_size
        return out

    def get_state(self) -> dict[str, int]:
        return {"position": self.position}

    def set_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])


class TurnLog:
    """Each episode's turns, (prompt ids, completion), in order. `set_live` is the episode
    runner's `on_call` hook (which episodes the next engine call serves) and `record` the
    `EnginePolicy` hook (what that call produced)."""

    def __init__(self, episodes: int):
        self.turns: list[list[tuple[list[int], Completion]]] = [[] for _ in range(episodes)]
        self.live: list[int] = []

    def set_live(self, live: list[int]) -> None:
        self.live = live

    def record(self, prompts: list[list[int]], completions: list[Completion]) -> None:
        for i, prompt, comp in zip(self.live, prompts, completions, strict=True):
            self.turns[i].append((prompt, comp))


def recorded_episodes(
    tasks: Sequence[Any], engine: Any, tokenizer: Any, params: SamplingParams, max_turns: int
) -> tuple[list[Any], TurnLog]:
    """Run `tasks`' episodes in lockstep through `engine`, keeping every turn's tokens."""
    log = TurnLog(len(tasks))
    policy = EnginePolicy(engine, tokenizer, params, record=log.record)
    results = run_episodes(tasks, policy, max_turns=max_turns, on_call=log.set_live)
    return results, log


def episode_sequences(
    turns: Sequence[Sequence[tuple[list[int], Completion]]],  # per episode
    advantages: np.ndarray,  # [E] one per episode
    keep: np.ndarray,  # [E] bool
    max_len: int,
) -> tuple[list[Seq], int]:
    """Every kept episode's assistant turns as trainer sequences with the episode's advantage.

    Turns whose prompt + response exceed `max_len` are left out (counted in the second value).
    """
    out, dropped = [], 0
    for e in np.flatnonzero(keep):
        for prompt, comp in turns[e]:
            if not comp.token_ids:
                continue
            if len(prompt) + len(comp.token_ids) > max_len:
                dropped += 1
                continue
            out.append(Seq(tuple(prompt), comp.token_ids, comp.logprobs, float(advantages[e])))
    return out, dropped


def iteration(parts: Parts, it: int, workdir: Path) -> tuple[dict[str, float], bool]:
    """One batch of P tasks x G episodes and its update (see the module docstring)."""
    cfg, timer = parts.cfg, metrics_lib.StepTimer()
    G = cfg.rollout.group_size
    with timer("data"):
        tasks = next(parts.data)
    with timer("rollout"):
        params = sampling_params(cfg, parts.stop_ids, "episodes", it)
        episodes = [t for t in tasks for _ in range(G)]  # [P * G], task-major
        results, recorder = recorded_episodes(
            episodes, parts.engine, parts.tokenizer, params, cfg.episode_max_turns
        )
    rewards = np.asarray([float(res.success) for res in results], np.float32).reshape(-1, G)
    nonzero, keep, adv = group_advantages(cfg, rewards)
    turn_counts = np.asarray([len(t) for t in recorder.turns]).reshape(rewards.shape)
    lengths = np.asarray([sum(len(c.token_ids) for _, c in t) for t in recorder.turns])
    truncated = np.asarray(
        [any(c.finish_reason == "length" for _, c in t) for t in recorder.turns]
    ).reshape(rewards.shape)
    out = metrics_lib.rollout_metrics(
        rewards, nonzero, lengths.reshape(rewards.shape), truncated, np.zeros(rewards.shape, bool)
    )
    max_len = max(cfg.buckets())
    seqs, too_long = episode_sequences(recorder.turns, adv.reshape(-1), np.repeat(keep, G), max_len)
    out["rollout/turns"] = float(turn_counts.sum())
    out["rollout/episode_turns_mean"] = float(turn_counts.mean())
    out["rollout/tokens"] = float(lengths.sum())
    out["rollout/tokens_per_s"] = float(lengths.sum()) / max(timer.seconds["rollout"], 1e-9)
    out["update/turns_over_max_len"] = float(too_long)
    max_rows = len(tasks) * G * cfg.episode_max_turns
    return update_on(parts, seqs, it, workdir, timer, out, max_rows=max_rows)
