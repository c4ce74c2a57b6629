"""The tool-use environment: tools run against the shop database, a scripted user replies.

State at any turn is rebuilt from the messages (`replay`): the session in the system prompt
gives the task and its initial database; earlier tool calls run again in order. `acceptable`
executes two actions from that state: writes are acceptable when they leave the same judged
database, lookups when they reveal at least the information the expected lookup reveals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotrl_jax.envs.base import Message
from pivotrl_jax.envs.messages import action_calls, history_calls, tool_result
from pivotrl_jax.envs.progress import flatten, moves_toward
from pivotrl_jax.envs.sessions import find_session, session_line
from pivotrl_jax.envs.tool_use.tasks import ToolUseTask, make_task
from pivotrl_jax.envs.tool_use.tools import TOOLS, dumps, execute, facts
from pivotrl_jax.envs.tool_use.world import DB, copy_db, functional
from pivotrl_jax.rewards.actions import parse_action
from pivotrl_jax.rewards.message import states, states_all


def system_prompt(session: int) -> str:
    return (
        "Shop support. Find the customer first, ask before any change, end with a short reply. "
        + session_line(session)
    )


class ToolUseEnv:
    def __init__(self, task: ToolUseTask):
        self.task = task
        self.db = copy_db(task.world)
        self.tools = TOOLS
        self.next_user = 1
        self.final_text: str | None = None

    def initial_messages(self) -> list[Message]:
        return [
            {"role": "system", "content": system_prompt(self.task.session)},
            {"role": "user", "content": self.task.user_turns[0]},
        ]

    def step(self, message: Message) -> tuple[list[Message], bool]:
        calls = message.get("tool_calls") or []
        if calls:
            action = parse_action({"tool_calls": calls})
            decoded = action_calls(action) if action.kind == "tool_calls" else []
            replies = []
            for k, c in enumerate(calls):
                if k < len(decoded):
                    out = execute(self.db, *decoded[k])
                else:
                    out = {"error": "malformed tool call"}
                replies.append(tool_result(c["id"], dumps(out)))
            return replies, False
        if self.next_user < len(self.task.user_turns):
            self.next_user += 1
            return [{"role": "user", "content": self.task.user_turns[self.next_user - 1]}], False
        self.final_text = message.get("content") or ""
        return [], True

    def success(self) -> bool:
        """The judged database equals the goal and the final message holds the answer."""
        if self.final_text is None or functional(self.db) != self.task.goal:
            return False
        return self.task.answer is None or states(self.task.answer, self.final_text)


def make_env(task: ToolUseTask) -> ToolUseEnv:
    return ToolUseEnv(task)


# ---------------------------------------------------------------------------------------------
# Rebuilding a turn's state


def replay(messages: Sequence[Message]) -> tuple[ToolUseTask, DB, set]:
    """The task named by the system prompt, the database after `messages`, and the facts the
    earlier tool results revealed."""
    session = find_session(list(messages))
    if session is None:
        raise ValueError("no 'Session N.' in the system prompt: cannot rebuild the shop")
    task = make_task(session)
    db = copy_db(task.world)
    known: set = set()
    for name, args in history_calls(messages):
        known |= facts(execute(db, name, args))
    return task, db, known


def _run(db: DB, calls: list[tuple[str, dict[str, Any]]]) -> tuple[DB, set, bool]:
    db = copy_db(db)
    results = [execute(db, name, args) for name, args in calls]
    return db, set().union(*(facts(r) for r in results)), all("error" not in r for r in results)


def acceptable(
    history: list[Message], expected: Any, candidate: Any, progress: bool = False
) -> bool:
    """Tool calls: every call succeeds, the judged database ends equal to the expected one's,
    and the candidate reveals what the expected calls newly reveal. With `progress`, where the
    expected action writes, any successful write that moves the database toward the goal is
    acceptable too. Messages state the task's facts: a closing one (the user has nothing left
    to say) its `report` (the answer, or what changed), an earlier one (a confirmation
    question) its `ask_facts` (the order or address it asks about)."""
    exp, cand = parse_action(expected), parse_action(candidate)
    if cand.kind == "invalid" or cand.kind != exp.kind:
        return False
    task, db, known = replay(history)
    if exp.kind == "message":
        users = sum(m.get("role") == "user" for m in history)
        closing = users >= len(task.user_turns)
        return states_all(task.report if closing else task.ask_facts, cand.text)
    exp_db, exp_facts, _ = _run(db, action_calls(exp))
    cand_db, cand_facts, cand_ok = _run(db, action_calls(cand))
    wanted = (exp_facts - known) or exp_facts
    if cand_ok and functional(cand_db) == functional(exp_db) and wanted <= cand_facts:
        return True
    if not (progress and cand_ok):
        return False
    before = flatten(functional(db))
    expected_writes = flatten(functional(exp_db)) != before
    return expected_writes and moves_toward(
        before, flatten(functional(cand_db)), flatten(task.goal)
    )
