"""The conversational tool-use domain: a shop database, seven tools and a scripted customer."""

from pivotrl_jax.envs.base import Domain, VerifierSpec
from pivotrl_jax.envs.domains import DOMAINS
from pivotrl_jax.envs.tool_use.env import ToolUseEnv, acceptable, make_env, replay
from pivotrl_jax.envs.tool_use.expert import expert
from pivotrl_jax.envs.tool_use.tasks import DOMAIN, ToolUseTask, make_task
from pivotrl_jax.envs.tool_use.tools import TOOLS, execute

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

__all__ = [
    "TOOLS",
    "ToolUseEnv",
    "ToolUseTask",
    "acceptable",
    "execute",
    "make_env",
    "make_task",
    "replay",
]
