"""SFT data: the expert's successful episodes on training sessions, as OpenAI chat JSONL records.

{"id", "domain", "messages": [system, user, assistant(tool_calls) , tool, ..., assistant],
 "tools": [OpenAI function specs], "metadata": {"kind", "session", "expert_seed"}}
"""

from __future__ import annotations

import copy
from typing import Any

from pivotrl_jax.envs.base import Task
from pivotrl_jax.envs.domains import DOMAINS, generate_tasks
from pivotrl_jax.envs.episode import run_episode

EXPERT_MAX_TURNS = 32


def trajectory(task: Task, seed: int) -> dict[str, Any]:
    """The expert's episode on `task` as an OpenAI chat JSONL record; raises if it fails."""
    domain = DOMAINS.get(task.domain)
    result = run_episode(task, domain.expert(task, seed), EXPERT_MAX_TURNS)
    if not result.success:
        raise RuntimeError(f"expert failed on {task.id} (kind {task.kind})")
    return {
        "id": task.id,
        "domain": task.domain,
        "messages": result.messages,
        "tools": copy.deepcopy(domain.make_env(task).tools),  # records never share objects
        "metadata": {"kind": task.kind, "session": task.session, "expert_seed": seed},
    }


def generate_sft(domain: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` expert trajectories on training sessions; `seed` picks sessions and variants."""
    return [trajectory(task, seed) for task in generate_tasks(domain, n, seed, split="train")]
