"""Out-of-domain, non-agentic questions with exact answers: arithmetic, comparison and string
manipulation.

They measure what PivotRL claims to keep: skills outside the trained agentic domain. A task is
one question; `score(task, completion)` is 1.0 when the completion's answer equals the expected
one exactly (after `extract_answer`: reasoning removed, last line, "The answer is" and a final
period dropped, case folded).

>>> t = make_task(7)
>>> score(t, f"The answer is {t.answer}.")
1.0
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from pivotrl_jax.envs.base import Domain, Message, Policy, ToolSpec
from pivotrl_jax.envs.domains import DOMAINS
from pivotrl_jax.envs.messages import assistant_text
from pivotrl_jax.envs.sessions import expert_rng, task_rng
from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.actions import strip_reasoning

DOMAIN = "ood"
SYSTEM_PROMPT = "Answer the question. Give the final answer on the last line."
_WORDS = "lamp garden river pencil window rocket banana planet silver orange castle tunnel"
WORDS = _WORDS.split()
_PREFIX = re.compile(r"^(?:the answer is|answer\s*:)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class OodTask:
    id: str
    session: int
    kind: str
    question: str
    answer: str
    domain: str = DOMAIN


KINDS: Registry[Callable[[random.Random], tuple[str, str]]] = Registry("ood question kind")


@KINDS.register("add")
def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    return f"What is {a} + {b}?", str(a + b)


@KINDS.register("subtract")
def _subtract(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    return f"What is {max(a, b)} - {min(a, b)}?", str(abs(a - b))


@KINDS.register("multiply")
def _multiply(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 99), rng.randint(2, 9)
    return f"What is {a} * {b}?", str(a * b)


@KINDS.register("reverse_word")
def _reverse(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    return rng.choice([f"Reverse the word {w}.", f"Write {w} backwards."]), w[::-1]


@KINDS.register("count_letter")
def _count(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    letter = rng.choice([*sorted(set(w)), "e", "a"])
    return f"How many times does the letter {letter} appear in {w}?", str(w.count(letter))


@KINDS.register("larger")
def _larger(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(range(10, 1000), 2)
    return f"Which is larger, {a} or {b}?", str(max(a, b))


@KINDS.register("repeat_word")
def _repeat(rng: random.Random) -> tuple[str, str]:
    w, k = rng.choice(WORDS), rng.randint(2, 4)
    return f"Write the word {w} {k} times, separated by spaces.", " ".join([w] * k)


@KINDS.register("sort_letters")
def _sort_letters(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    return f"Write the letters of {w} in alphabetical order.", "".join(sorted(w))


def make_task(session: int) -> OodTask:
    rng = task_rng(DOMAIN, session)
    kind = rng.choice(KINDS.names())
    question, answer = KINDS.get(kind)(rng)
    return OodTask(f"{DOMAIN}-{session}", session, kind, question, answer)


def extract_answer(completion: str) -> str:
    """The answer a completion gives: its last non-empty line, without "The answer is", a final
    period or surrounding spaces, case folded."""
    text = strip_reasoning(completion)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return _PREFIX.sub("", last).rstrip(".").strip().casefold()


def score(task: OodTask, completion: str) -> float:
    return float(extract_answer(completion) == task.answer.casefold())


class OodEnv:
    """One question, one answer."""

    def __init__(self, task: OodTask):
        self.task = task
        self.tools: list[ToolSpec] = []
        self.final_text: str | None = None

    def initial_messages(self) -> list[Message]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.task.question},
        ]

    def step(self, message: Message) -> tuple[list[Message], bool]:
        self.final_text = message.get("content") or ""
        return [], True

    def success(self) -> bool:
        return self.final_text is not None and score(self.task, self.final_text) == 1.0


def expert(task: OodTask, seed: int) -> Policy:
    rng = expert_rng(DOMAIN, task.session, seed)
    reply = assistant_text(rng.choice([task.answer, f"The answer is {task.answer}."]))
    return lambda messages, tools: reply


DOMAINS.register(
    DOMAIN,
    Domain(name=DOMAIN, agentic=False, make_task=make_task, make_env=OodEnv, expert=expert),
)
