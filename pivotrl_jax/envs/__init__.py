"""Synthetic agentic domains for PivotRL: SFT data, executable environments, verifiers' wiring.

DOMAINS                                  name -> Domain ("tool_use", "terminal", "ood")
generate_sft(domain, n, seed)            expert trajectories (OpenAI chat JSONL records)
generate_tasks(domain, n, seed, split)   tasks for evaluation ("eval") or RL ("train")
run_episode(task, policy, max_turns)     -> EpisodeResult(success, turns, messages)
verifier_spec(name)                      VerifierSpec(name, params) for pivotrl_jax.rewards
DOMAINS.get(name).acceptable             (history, expected, candidate) -> bool, by execution

Importing this package registers the "terminal" command sandbox (rewards.sandbox.SANDBOXES) and
the "env_acceptable" verifier (rewards.base.VERIFIERS).
"""

from pivotrl_jax.envs import ood, terminal, tool_use, verifier
from pivotrl_jax.envs.base import Domain, EpisodeResult, Policy, VerifierSpec
from pivotrl_jax.envs.domains import DOMAINS, expert_policy, generate_tasks, verifier_spec
from pivotrl_jax.envs.episode import run_episode
from pivotrl_jax.envs.sft import generate_sft

__all__ = [
    "DOMAINS",
    "Domain",
    "EpisodeResult",
    "Policy",
    "VerifierSpec",
    "expert_policy",
    "generate_sft",
    "generate_tasks",
    "ood",
    "run_episode",
    "terminal",
    "tool_use",
    "verifier",
    "verifier_spec",
]
