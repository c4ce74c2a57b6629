"""Terminal tasks: a generated workspace, an instruction, the goal filesystem and, for
questions, the answer the final message must contain.

`make_task(session)` is deterministic. A quarter of the sessions (decided on a stream of their
own, so the mixture weight changes no other task) draw a chained kind, the rest a plain one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pivotrl_jax.envs.sessions import task_rng
from pivotrl_jax.envs.terminal.fs import VirtualFS
from pivotrl_jax.envs.terminal.kinds import CHAINED_KINDS, KINDS, workspace

DOMAIN = "terminal"
TOOL_NAME = "run_command"  # the one tool: run a command line
CHAINED_FRACTION = 0.25


@dataclass(frozen=True)
class TerminalTask:
    id: str
    session: int
    kind: str
    instruction: str
    initial: VirtualFS  # never changed; environments work on a copy
    goal: tuple[tuple[str, ...], tuple[tuple[str, str], ...]]  # VirtualFS.tree() when done
    answer: str | None  # text the final message must contain (question tasks)
    params: Mapping[str, Any]
    report: str = ""  # the fact every final message states: the answer, or what was changed
    domain: str = DOMAIN


def make_task(session: int) -> TerminalTask:
    rng = task_rng(DOMAIN, session)
    kind = rng.choice(KINDS.names())
    fs = workspace(rng)
    if random.Random(f"chained/{DOMAIN}/{session}").random() < CHAINED_FRACTION:
        kind = rng.choice(CHAINED_KINDS.names())
        draw = CHAINED_KINDS.get(kind)(rng, fs)
    else:
        draw = KINDS.get(kind)(rng, fs)
    return TerminalTask(
        id=f"{DOMAIN}-{session}",
        session=session,
        kind=kind,
        instruction=draw.instruction,
        initial=fs,
        goal=draw.goal.tree(),
        answer=draw.answer,
        params=draw.params,
        report=draw.report,
    )
