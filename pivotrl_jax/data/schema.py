"""Records of the data layer: messages, trajectories, candidates and pivots.

Messages use the OpenAI chat layout that chat templates expect (`role`, `content`,
`tool_calls` with `function.name` / `function.arguments`, `reasoning_content`,
`tool_call_id`); tool-call arguments are kept parsed (a JSON object), so templates
render them with one canonical JSON spelling.

A candidate is one assistant turn of a trajectory (PivotRL Eq. 3): its state is every
message before the turn (plus the tools), its action is the turn itself. On disk a
candidate is a JSON dict with `schema_version`, the state under `messages` and the action
under `expected_action` (an assistant message dict); later stages add keys to the same dict
(profiling adds `profile` = {rewards, mean, variance, ...}; selection adds `split`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA_VERSION = 1
ROLES = ("system", "user", "assistant", "tool")
KIND_MESSAGE = "message"
KIND_TOOL_CALL = "tool_call"
KIND_PARALLEL = "parallel"
KINDS = (KIND_TOOL_CALL, KIND_PARALLEL, KIND_MESSAGE)


@dataclasses.dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]  # the parsed JSON object
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": dict(self.arguments)},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCall:
        fn = d["function"]
        return cls(name=fn["name"], arguments=dict(fn["arguments"]), id=d.get("id", ""))


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning_content: str | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The chat-template dict; optional fields appear only when set."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.reasoning_content is not None:
            d["reasoning_content"] = self.reasoning_content
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        return cls(
            role=d["role"],
            content=d.get("content") or "",
            tool_calls=tuple(ToolCall.from_dict(c) for c in d.get("tool_calls") or ()),
            reasoning_content=d.get("reasoning_content"),
            tool_call_id=d.get("tool_call_id"),
        )


def action_kind(action: Message) -> str:
    """`message`, `tool_call` (one call) or `parallel` (several calls in one turn)."""
    n = len(action.tool_calls)
    return KIND_MESSAGE if n == 0 else KIND_TOOL_CALL if n == 1 else KIND_PARALLEL


@dataclasses.dataclass(frozen=True)
class Trajectory:
    id: str
    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] = ()  # OpenAI function specs
    domain: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""  # "path:line" of the input row


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One assistant turn: state (history before it, with tools) and expected action."""

    id: str  # "<trajectory_id>:<turn_index>"
    trajectory_id: str
    turn_index: int  # 0 for the first assistant turn of the trajectory, 1 for the next, ...
    domain: str
    verifier: str
    state: tuple[Message, ...]
    action: Message
    tools: tuple[Mapping[str, Any], ...] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""
    truncated_messages: int = 0  # messages dropped from the front to fit the prompt length
    prompt_ids: tuple[int, ...] | None = None  # [T] the state rendered with the chat template
    completion_ids: tuple[int, ...] | None = None  # the expected action's completion tokens
    token_exact: bool | None = None  # prompt_ids + completion_ids prefix the whole conversation

    @property
    def kind(self) -> str:
        return action_kind(self.action)

    def to_record(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "record_type": "candidate",
            "id": self.id,
            "trajectory_id": self.trajectory_id,
            "turn_index": self.turn_index,
            "kind": self.kind,
            "domain": self.domain,
            "verifier": self.verifier,
            "tools": [dict(t) for t in self.tools],
            "messages": [m.to_dict() for m in self.state],
            "expected_action": self.action.to_dict(),
            "metadata": dict(self.metadata),
            "source": self.source,
            "truncated_messages": self.truncated_messages,
            "prompt_ids": None if self.prompt_ids is None else list(self.prompt_ids),
            "completion_ids": None if self.completion_ids is None else list(self.completion_ids),
            "token_exact": self.token_exact,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Candidate:
        check_schema_version(r)
        return cls(
            id=r["id"],
            trajectory_id=r["trajectory_id"],
            turn_index=r["turn_index"],
            domain=r["domain"],
            verifier=r["verifier"],
            state=tuple(Message.from_dict(m) for m in r["messages"]),
            action=Message.from_dict(r["expected_action"]),
            tools=tuple(r.get("tools") or ()),
            metadata=dict(r.get("metadata") or {}),
            source=r.get("source", ""),
            truncated_messages=r.get("truncated_messages", 0),
            prompt_ids=_opt_tuple(r.get("prompt_ids")),
            completion_ids=_opt_tuple(r.get("completion_ids")),
            token_exact=r.get("token_exact"),
        )


@dataclasses.dataclass(frozen=True)
class Pivot:
    """A profiled candidate (PivotRL Eq. 4) kept by selection (Eq. 5).

    `profile` is what profiling wrote: at least `rewards` [K], `mean` and `variance`.
    """

    candidate: Candidate
    profile: Mapping[str, Any]
    split: str = "train"

    @property
    def mean(self) -> float:
        return self.profile["mean"]

    @property
    def variance(self) -> float:
        return self.profile["variance"]

    def to_record(self) -> dict[str, Any]:
        return {
            **self.candidate.to_record(),
            "record_type": "pivot",
            "profile": dict(self.profile),
            "split": self.split,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Pivot:
        return cls(
            candidate=Candidate.from_record(r),
            profile=dict(r["profile"]),
            split=r.get("split", "train"),
        )


def check_schema_version(r: Mapping[str, Any]) -> None:
    version = r.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"record {r.get('id')!r} has schema_version {version!r}; this code reads "
            f"version {SCHEMA_VERSION}"
        )


def _opt_tuple(x: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if x is None else tuple(x)
