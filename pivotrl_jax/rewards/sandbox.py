"""The seam between the shell verifier and a domain's simulated terminal.

A `CommandSandbox` runs a command string inside a simulated environment and reports what a user
would see (`output`), a digest of the environment's state afterwards (`state_digest`: equal
digests mean equal states) and whether the command succeeded (`ok`). Nothing here touches the
host: a sandbox is an interpreter over a model of the machine, never a subprocess.

`SANDBOXES` maps an environment name to a factory `factory(state: VerifyState) ->
CommandSandbox` that rebuilds the environment as it was at the verified turn (for instance by
replaying the earlier tool calls in `state.messages`). Environments register themselves from
their own package (`pivotrl_jax/envs/`); the shell verifier only looks them up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.base import VerifyState


@dataclass(frozen=True)
class SandboxResult:
    output: str
    state_digest: str
    ok: bool


class CommandSandbox(Protocol):
    def run(self, command: str) -> SandboxResult: ...


SandboxFactory = Callable[[VerifyState], CommandSandbox]

SANDBOXES: Registry[SandboxFactory] = Registry("command sandbox")
