"""Batched episode evaluation: many episodes advance in lockstep, one engine call per turn.

At turn t every unfinished episode contributes its message history; the batch policy answers all
of them at once (so the engine sees a full batch); each environment then steps on its answer.
This gives the same outcomes as running `envs.run_episode` one episode at a time with the same
policy answers, at a fraction of the engine calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from pivotrl_jax.envs import DOMAINS, EpisodeResult
from pivotrl_jax.envs.messages import to_message

# (histories, tools per episode) -> one completion per history
BatchPolicy = Callable[[list[list[dict]], list[list[dict]]], list[Any]]


def run_episodes(
    tasks: Sequence[Any],
    policy: BatchPolicy,
    max_turns: int = 16,
    progress: bool = False,
    desc: str = "episodes",
    on_call: Callable[[list[int]], None] | None = None,
) -> list[EpisodeResult]:
    """Runs every task's episode to its end or `max_turns`; `on_call(live)` is told, before each
    policy call, which episodes (indices into `tasks`) the call's histories belong to."""
    envs = [DOMAINS.get(t.domain).make_env(t) for t in tasks]
    messages = [env.initial_messages() for env in envs]
    turns = [0] * len(tasks)
    done = [False] * len(tasks)
    bar = tqdm(total=len(tasks), desc=desc, unit="ep", disable=not progress)
    while True:
        live = [i for i in range(len(tasks)) if not done[i] and turns[i] < max_turns]
        if not live:
            break
        if on_call is not None:
            on_call(live)
        completions = policy([list(messages[i]) for i in live], [envs[i].tools for i in live])
        for i, completion in zip(live, completions, strict=True):
            message, _ = to_message(completion, turns[i])
            messages[i].append(message)
            turns[i] += 1
            replies, done[i] = envs[i].step(message)
            messages[i].extend(replies)
            if done[i] or turns[i] >= max_turns:
                bar.update(1)
    bar.close()
    return [
        EpisodeResult(success=done[i] and envs[i].success(), turns=turns[i], messages=messages[i])
        for i in range(len(tasks))
    ]


def success_rate(results: Sequence[EpisodeResult]) -> float:
    return sum(r.success for r in results) / len(results) if results else 0.0
