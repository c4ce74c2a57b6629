"""The terminal domain: a simulated shell over an in-memory filesystem, one `run_command` tool."""

from pivotrl_jax.envs.base import Domain, VerifierSpec
from pivotrl_jax.envs.domains import DOMAINS
from pivotrl_jax.envs.terminal.env import TerminalSandbox, acceptable, make_env, replay
from pivotrl_jax.envs.terminal.expert import expert
from pivotrl_jax.envs.terminal.tasks import DOMAIN, TerminalTask, make_task

DOMAINS.register(
    DOMAIN,
    Domain(
        name=DOMAIN,
        agentic=True,
        make_task=make_task,
        make_env=make_env,
        expert=expert,
        verifier=VerifierSpec("env_acceptable", {"domain": DOMAIN, "progress": True}),
        acceptable=acceptable,
    ),
)

__all__ = ["TerminalSandbox", "TerminalTask", "acceptable", "make_env", "make_task", "replay"]
