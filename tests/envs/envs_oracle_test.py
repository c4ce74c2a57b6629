"""The rewards are functions of the state: a prompt-only oracle earns them, shuffled actions do
not (`envs/oracle.py`), under each agentic domain's own functional verifier."""

import re

import pytest

from pivotrl_jax.envs import generate_sft, generate_tasks, run_episode
from pivotrl_jax.envs.oracle import ORACLES, candidate_turns, measure, parse, template_regex
from pivotrl_jax.envs.terminal.kinds import INSTRUCTIONS

DOMAINS = ("terminal", "tool_use")


@pytest.mark.parametrize("domain", DOMAINS)
def test_oracle_earns_the_reward_and_shuffled_actions_do_not(domain):
    got = measure(domain, generate_sft(domain, 150, seed=11), seed=0)
    assert got["turns"] > 300
    assert got["oracle"] >= 0.95, got
    assert got["control"] <= 0.05, got


@pytest.mark.parametrize("domain", DOMAINS)
def test_oracle_reads_only_the_prompt(domain):
    """The session number (which rebuilds the task) is not what the oracle acts on."""
    for history, _, _ in candidate_turns(generate_sft(domain, 20, seed=4)):
        blind = [dict(m) for m in history]
        blind[0]["content"] = re.sub(r"Session \d+\.", "Session 1.", blind[0]["content"])
        assert ORACLES.get(domain)(blind) == ORACLES.get(domain)(history)


@pytest.mark.parametrize("domain", DOMAINS)
def test_oracle_solves_whole_episodes(domain):
    tasks = generate_tasks(domain, 60, seed=2)
    wins = sum(run_episode(t, lambda msgs, tools: ORACLES.get(domain)(msgs)).success for t in tasks)
    assert wins >= 0.95 * len(tasks)


def test_instruction_templates_parse_back_to_the_task():
    from pivotrl_jax.envs.terminal import make_task

    for session in range(0, 400, 2):
        task = make_task(session)
        kind, fields = parse(task.instruction, INSTRUCTIONS)
        assert kind == task.kind
        for key, value in fields.items():
            if key in task.params:
                assert str(task.params[key]) == value or task.kind == "make_file", (key, task)


def test_template_regex_repeats_a_field():
    rx = template_regex("copy {a} to {b}, then {a} again.")
    assert rx.fullmatch("copy x to y, then x again.").groupdict() == {"a": "x", "b": "y"}
    assert rx.fullmatch("copy x to y, then z again.") is None
