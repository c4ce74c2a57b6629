"""The `DOMAINS` registry and the generators every caller uses.

Domains register themselves when `pivotrl_jax.envs` is imported: "tool_use", "terminal" (agentic)
and "ood" (single-turn questions for out-of-domain retention).

    generate_sft(domain, n, seed)            -> n expert trajectories (training sessions)
    generate_tasks(domain, n, seed, split)   -> n tasks ("eval" sessions unless split="train")
    expert_policy(task, seed)                -> the expert as a Policy
    verifier_spec(domain)                    -> VerifierSpec(name, params), its reference verifier
"""

from __future__ import annotations

from pivotrl_jax.envs.base import Domain, Policy, Task, VerifierSpec
from pivotrl_jax.envs.sessions import session_ids
from pivotrl_jax.registry import Registry

DOMAINS: Registry[Domain] = Registry("domain")


def generate_tasks(domain: str, n: int, seed: int, split: str = "eval") -> list[Task]:
    """`n` tasks of `domain`; "eval" and "train" sessions never overlap (see sessions.py)."""
    make = DOMAINS.get(domain).make_task
    return [make(s) for s in session_ids(domain, split, n, seed)]


def expert_policy(task: Task, seed: int = 0) -> Policy:
    return DOMAINS.get(task.domain).expert(task, seed)


def verifier_spec(domain: str) -> VerifierSpec:
    """The reference functional verifier for `domain`'s pivots (`build_verifier(spec.name,
    **spec.params)`); `VerifierSpec("env_acceptable", {"domain": domain})` is the executing one."""
    spec = DOMAINS.get(domain).verifier
    if spec is None:
        raise KeyError(f"domain {domain!r} has no verifier (it is not agentic)")
    return spec


def verifier_config(domains: tuple[str, ...] = ("terminal", "tool_use")) -> dict[str, dict]:
    """`{domain: {"name", "params"}}` for a command config's `verifiers` section."""
    return {
        d: {"name": verifier_spec(d).name, "params": dict(verifier_spec(d).params)} for d in domains
    }
