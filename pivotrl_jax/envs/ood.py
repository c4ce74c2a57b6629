"""Out-of-domain, non-agentic questions with exact answers: addition, and questions about the
spelling and order of the words of a 26-word list (reverse, sort or count letters, first and
last letter, which letter a word contains, which of two words comes first).

The list has one word per initial letter, so which of two words comes first is decided by their
first letters, and its size is what the demo's tiny pi_0 learns within its pretraining budget
(3000 steps, 3000 question rows): the 650 ordered pairs give the evaluation more than 512
distinct questions of kinds pi_0 answers reliably, and out-of-domain forgetting can only be
measured on questions pi_0 answers (docs/demo.md, "The out-of-domain question space").

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
from pivotrl_jax.envs.sessions import task_rng
from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.actions import strip_reasoning

DOMAIN = "ood"
SYSTEM_PROMPT = "Answer the question. Give the final answer on the last line."
_WORDS = (
    "apple banana castle dragon eagle forest garden harbor island jacket kitten lamp mirror "
    "needle orange pencil queen river silver tunnel umbrella violin window xylophone yellow zebra"
)
WORDS = _WORDS.split()
_COMMON_FIRST = "etaoinshrdlucmfwypvbgkjqxz"  # letters, most frequent in English first
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


@KINDS.register("reverse_word")
def _reverse(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    return rng.choice([f"Reverse the word {w}.", f"Write {w} backwards."]), w[::-1]


@KINDS.register("count_letter")
def _count(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    letter = rng.choice([*sorted(set(w)), "e", "a"])
    return f"How many times does the letter {letter} appear in {w}?", str(w.count(letter))


@KINDS.register("first_letter")
def _first_letter(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    return f"What is the first letter of {w}?", w[0]


@KINDS.register("last_letter")
def _last_letter(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    return f"What is the last letter of {w}?", w[-1]


@KINDS.register("contains_letter")
def _contains_letter(rng: random.Random) -> tuple[str, str]:
    """Half the questions about a letter of the word, half about one of as many common letters
    it lacks, so that "yes" and "no" are equally likely and neither answer alone scores."""
    w = rng.choice(WORDS)
    present = sorted(set(w))
    absent = [c for c in _COMMON_FIRST if c not in w][: len(present)]
    letter = rng.choice(present if rng.random() < 0.5 else absent)
    return f"Does {w} contain the letter {letter}?", "yes" if letter in w else "no"


@KINDS.register("alphabetical_first")
def _alphabetical_first(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(WORDS, 2)
    return f"Which comes first in alphabetical order, {a} or {b}?", min(a, b)


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
    """Always "The answer is X.": the answer never at the reply's first token.

    A reply's first token sits where every in-domain reply starts (a tool call, a final
    message), the one position that in-domain RL trains in every context. When pi_0 also
    answered these questions bare (half its pretraining answers were "X"), its answer was that
    first token, and PivotRL's in-domain updates there replaced it: the demo's PivotRL answered
    "Which comes first in alphabetical order, lamp or tunnel?" with "rocket", and lost 13.5
    points on that kind, while the same model with "The answer is" put before its reply lost 3.3
    (docs/demo.md, "Out-of-domain answers and the first token"). With the lead-in the
    out-of-domain questions measure what they are for: whether the facts survive.
    """
    del seed  # one reply per task
    reply = assistant_text(f"The answer is {task.answer}.")
    return lambda messages, tools: reply


DOMAINS.register(
    DOMAIN,
    Domain(name=DOMAIN, agentic=False, make_task=make_task, make_env=OodEnv, expert=expert),
)
