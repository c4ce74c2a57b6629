"""The records every domain shares: tasks, episodes, verifier wiring, and the Domain itself.

A domain is a frozen bundle of functions registered in `DOMAINS` (see `domains.py`): it builds a
task from a session number, an environment from a task, an expert policy that solves the task,
and it names the functional verifier (plus a local, environment-executing acceptability check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

Message = dict[str, Any]  # an OpenAI chat message
ToolSpec = dict[str, Any]  # an OpenAI function spec: {"type": "function", "function": {...}}
Completion = str | Message  # raw completion text (Hermes <tool_call> blocks) or an assistant dict
Policy = Callable[[list[Message], list[ToolSpec]], Completion]


class Task(Protocol):
    """What every domain's task carries; domains add their own fields."""

    @property
    def id(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def session(self) -> int: ...
    @property
    def kind(self) -> str: ...


class Environment(Protocol):
    """One episode's world. `step` answers one assistant message with the messages that follow
    it (tool results, a user reply) and whether the episode is over."""

    tools: list[ToolSpec]

    def initial_messages(self) -> list[Message]: ...
    def step(self, message: Message) -> tuple[list[Message], bool]: ...
    def success(self) -> bool: ...


@dataclass(frozen=True)
class EpisodeResult:
    success: bool
    turns: int  # assistant messages produced by the policy
    messages: list[Message]


@dataclass(frozen=True)
class VerifierSpec:
    """The name of a registered verifier (`pivotrl_jax.rewards`) and its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # read-only: one spec is shared by every caller
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


Acceptable = Callable[..., bool]  # (history, expected, candidate, progress=False) -> bool


@dataclass(frozen=True)
class Domain:
    """One task family. `acceptable(history, expected, candidate, progress=False)` executes both
    actions in the state rebuilt from `history` and says whether the candidate is functionally
    acceptable."""

    name: str
    agentic: bool
    make_task: Callable[[int], Any]
    make_env: Callable[[Any], Environment]
    expert: Callable[[Any, int], Policy]  # (task, seed) -> a policy that solves the task
    verifier: VerifierSpec | None = None
    acceptable: Acceptable | None = None
