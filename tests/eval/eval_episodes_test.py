"""The lockstep batched episode runner equals the one-episode-at-a-time loop."""

import json

import pytest

from pivotrl_jax.envs import expert_policy, generate_tasks, run_episode
from pivotrl_jax.eval.episodes import run_episodes, success_rate


def keyed_experts(tasks, seed=0):
    """A batch policy answering each history with the expert of the task it belongs to."""
    by_start = {}
    for t in tasks:
        from pivotrl_jax.envs import DOMAINS

        first = json.dumps(DOMAINS.get(t.domain).make_env(t).initial_messages(), sort_keys=True)
        by_start[first] = expert_policy(t, seed)
    calls = []

    def policy(histories, tools):
        calls.append(len(histories))
        out = []
        for h, tl in zip(histories, tools):
            n0 = (
                next(i for i, m in enumerate(h) if m["role"] == "assistant")
                if any(m["role"] == "assistant" for m in h)
                else len(h)
            )
            key = json.dumps(h[:n0], sort_keys=True)
            out.append(by_start[key](h, tl))
        return out

    return policy, calls


@pytest.mark.parametrize("domain", ["terminal", "tool_use"])
def test_lockstep_equals_sequential(domain):
    tasks = generate_tasks(domain, 12, seed=3)
    policy, calls = keyed_experts(tasks)
    batched = run_episodes(tasks, policy, max_turns=12)
    sequential = [run_episode(t, expert_policy(t, 0), max_turns=12) for t in tasks]
    assert [r.success for r in batched] == [r.success for r in sequential]
    assert [r.turns for r in batched] == [r.turns for r in sequential]
    assert [r.messages for r in batched] == [r.messages for r in sequential]
    assert success_rate(batched) == 1.0  # experts solve every task
    assert max(calls) == 12 and len(calls) == max(r.turns for r in batched)


def test_max_turns_stops_a_policy_that_never_finishes():
    tasks = generate_tasks("terminal", 3, seed=1)

    def stall(histories, tools):
        return [
            '<tool_call>{"name": "run_command", "arguments": {"command": "pwd"}}</tool_call>'
            for _ in histories
        ]

    results = run_episodes(tasks, stall, max_turns=4)
    assert [r.turns for r in results] == [4, 4, 4]
    assert success_rate(results) == 0.0
