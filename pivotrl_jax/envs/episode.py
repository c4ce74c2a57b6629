"""The model-agnostic episode loop, shared by every domain.

>>> from pivotrl_jax.envs import generate_tasks, expert_policy
>>> task = generate_tasks("terminal", 1, seed=0)[0]
>>> run_episode(task, expert_policy(task), max_turns=12).success
True
"""

from __future__ import annotations

from pivotrl_jax.envs.base import EpisodeResult, Policy, Task
from pivotrl_jax.envs.domains import DOMAINS
from pivotrl_jax.envs.messages import to_message


def run_episode(task: Task, policy: Policy, max_turns: int = 16) -> EpisodeResult:
    """Alternate policy turns and environment replies until the environment ends the episode
    or the policy has spoken `max_turns` times; success is the environment's own check."""
    env = DOMAINS.get(task.domain).make_env(task)
    messages = env.initial_messages()
    turns = 0
    done = False
    while not done and turns < max_turns:
        completion = policy(list(messages), env.tools)
        message, _ = to_message(completion, turns)
        messages.append(message)
        turns += 1
        replies, done = env.step(message)
        messages.extend(replies)
    return EpisodeResult(success=done and env.success(), turns=turns, messages=messages)
