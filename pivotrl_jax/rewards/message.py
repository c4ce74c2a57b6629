"""`message`: an assistant message judged by the facts it states, not by its wording.

A fact is a number, a path or file name, a yes/no, or a short phrase (a name, a status). Both
sides are normalised before comparison:

- numbers: `7`, `7.0`, `$7`, `seven` are the same fact (`17` is another);
- paths: `./a/b`, `~/a/b`, `/home/user/a/b` and `a/b/` are `a/b`, and a path states the file
  name it ends with (`docs/plan.txt` states `plan.txt`);
- words: case and surrounding punctuation do not matter; yes/no have their common spellings;
- phrases (facts with spaces) must appear as that sequence of normalised words.

The verifier passes a message (never a tool call) that states every required fact: the
verifier's own `facts` when given (a domain that knows the answer), otherwise those extracted
from the expected message (numbers, paths and file names, yes/no, quoted strings); where the
required facts include numbers, a message that states any other number fails (`answers`): a
list of guesses is not an answer.

>>> states("7", "There are 7 lines."), states("7", "17 lines."), states("7", "Seven.")
(True, False, True)
>>> states("plan.txt", "It is ~/docs/plan.txt."), states("archive", "Moved into ./archive/")
(True, True)
>>> sorted(extract_facts("Done: docs/a.txt has 12 lines, not 'ok'."))
['12', 'a.txt', 'docs/a.txt', 'ok']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pivotrl_jax.rewards.actions import Action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result

HOME = "/home/user"
_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_SMALL_NUMBERS.split())}
_YES = frozenset({"yes", "yeah", "yep", "correct"})
_NO = frozenset({"no", "nope"})
_EDGE = "\"'`()[]{}<>,;:!?"
_NUMBER = re.compile(r"[-+]?\$?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")


def normalize_word(word: str) -> str:
    """One word's fact form: lower case, edge punctuation and a final period dropped, numbers
    canonical, path spellings reduced to the home-relative form."""
    w = word.strip(_EDGE).lower()
    while w.endswith(".") and not w.endswith(".."):
        w = w[:-1].strip(_EDGE)
    if w in _NUMBER_WORDS:
        return _NUMBER_WORDS[w]
    if w in _YES:
        return "yes"
    if w in _NO:
        return "no"
    if _NUMBER.fullmatch(w):
        value = float(w.replace("$", ""))
        return str(int(value)) if value == int(value) else str(value)
    for prefix in (HOME + "/", "~/", "./"):
        if w.startswith(prefix) and len(w) > len(prefix):
            w = w[len(prefix) :]
            break
    return w.rstrip("/") if len(w) > 1 else w


def words_of(text: str) -> list[str]:
    return [n for n in (normalize_word(w) for w in text.split()) if n]


def stated(text: str) -> set[str]:
    """Every single-word fact `text` states: its normalised words and the file name each path
    ends with."""
    out: set[str] = set()
    for w in words_of(text):
        out.add(w)
        if "/" in w:
            out.add(w.rsplit("/", 1)[-1])
    return out


def states(fact: str, text: str) -> bool:
    """Whether `text` states `fact` (see the module docstring)."""
    want = words_of(fact)
    if not want:
        return True
    if len(want) == 1:
        return want[0] in stated(text)
    have = words_of(text)
    return any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


def states_all(facts: Iterable[str], text: str) -> bool:
    return all(states(f, text) for f in facts)


def numbers_of(text: str) -> set[str]:
    """The numbers `text` states, normalised (`seven` and `7.0` are `7`)."""
    return {w for w in words_of(text) if _NUMBER.fullmatch(w)}


def other_numbers(facts: Iterable[str], text: str) -> set[str]:
    """The numbers `text` states beyond those of `facts`; empty when the facts hold no number
    (nothing to contradict)."""
    allowed = set().union(*map(numbers_of, facts))
    return numbers_of(text) - allowed if allowed else set()


def answers(facts: Iterable[str], text: str) -> bool:
    """Whether `text` states every fact and, where the facts include numbers, no other number: a
    message listing several candidate numbers does not state the answer, it guesses.

    >>> answers(["7"], "There are 7 lines."), answers(["7"], "7 lines. Or 8. Or 9.")
    (True, False)
    >>> answers(["notes.txt"], "Moved notes.txt into 2024/."), answers(["3"], "File 3 of 3.")
    (True, True)
    """
    facts = list(facts)
    return states_all(facts, text) and not other_numbers(facts, text)


def extract_facts(text: str) -> set[str]:
    """The checkable facts of a message: numbers, paths and file names, a leading yes/no, quoted
    strings."""
    facts = {q1 or q2 for q1, q2 in _QUOTED.findall(text)}
    words = words_of(_QUOTED.sub(" ", text))
    if words and words[0] in ("yes", "no"):
        facts.add(words[0])
    for w in words:
        if _NUMBER.fullmatch(w):
            facts.add(w)
        elif "/" in w or re.fullmatch(r"[\w-]+\.[a-z][a-z0-9]{0,4}", w):
            facts.add(w)
            if "/" in w:
                facts.add(w.rsplit("/", 1)[-1])
    return facts


@dataclass(frozen=True)
class MessageVerifier:
    """Pass a message that states `facts` (or, when empty, the expected message's facts)."""

    facts: tuple[str, ...] = ()

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.error is not None:
            raise ValueError(f"expected action is invalid: {expected.error}")
        if action.kind != "message":
            return result(0.0, f"not_a_message:{action.kind}")
        required = set(self.facts) if self.facts else extract_facts(expected.text)
        missing = sorted(f for f in required if not states(f, action.text))
        if missing:
            return result(0.0, "missing_fact", missing=missing)
        extra = other_numbers(required, action.text)
        if extra:
            return result(0.0, "other_numbers", extra=sorted(extra))
        return result(1.0, "states_facts")


VERIFIERS.register("message", MessageVerifier)
