"""`shell`: terminal actions that do the same thing, compared without running anything on the host.

1. Both commands are tokenised the POSIX-shell way (`shlex`: quotes removed, so `echo "hi"` =
   `echo hi`; `; && || | & ( ) < >` and unquoted newlines become operator tokens) and
   normalised per simple command: consecutive short-flag clusters merge into one sorted cluster
   (`-la` = `-al` = `-l -a`, while `-vv` keeps its count; flags are not moved across operands,
   and nothing after `--` is a flag), and an operand loses leading `./` and one trailing `/`
   (`./x` = `x`, `dir/` = `dir`). The program name is kept as written. A trailing `;` or
   newline is dropped. Equal normal forms score 1.
2. Otherwise, when the verifier names a sandbox (`sandbox="NAME"`, a factory in
   `sandbox.SANDBOXES`), two fresh sandboxes are built from the same state, the expected
   command(s) run in one and the candidate's in the other, and the candidate scores 1 when the
   outputs, success flags and final state digests are all equal.

The command is the string argument `argument` (default "command") of each tool call, or the text
of a message. With several calls, the commands run in order. Other call arguments must be equal
(canonical JSON) unless `compare_other_arguments=False`.

>>> normalize_command("ls -l -a ./src/ && echo 'done';")
(('ls', '-al', 'src'), ('&&',), ('echo', 'done'))
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pivotrl_jax.rewards.actions import Action, canonical_json
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result
from pivotrl_jax.rewards.sandbox import SANDBOXES

_OPERATOR_CHARS = "();<>|&\n"
_SEPARATORS = frozenset({";", "\n"})
_FLAG_CLUSTER = re.compile(r"-[A-Za-z]+")


def _tokens(command: str) -> list[str]:
    lex = shlex.shlex(command, posix=True, punctuation_chars=_OPERATOR_CHARS)
    lex.whitespace = " \t\r"
    lex.whitespace_split = True
    lex.commenters = ""
    return list(lex)


def _operand(token: str) -> str:
    while token.startswith("./") and len(token) > 2:
        token = token[2:]
    if len(token) > 1 and token.endswith("/"):
        token = token[:-1]
    return token


def _normalize_simple(words: list[str]) -> tuple[str, ...]:
    out = [words[0]]
    flags: list[str] = []
    options_done = False
    for word in words[1:]:
        if not options_done and _FLAG_CLUSTER.fullmatch(word):
            flags.extend(word[1:])
            continue
        if flags:
            out.append("-" + "".join(sorted(flags)))
            flags = []
        if word == "--":
            options_done = True
            out.append(word)
        elif word.startswith("-") and not options_done:
            out.append(word)
        else:
            out.append(_operand(word))
    if flags:
        out.append("-" + "".join(sorted(flags)))
    return tuple(out)


def normalize_command(command: str) -> tuple[tuple[str, ...], ...]:
    """The command's normal form: simple commands and operators in order (see module doc).
    Raises ValueError for unbalanced quotes."""
    parts: list[tuple[str, ...]] = []
    words: list[str] = []
    for tok in _tokens(command.strip()):
        if tok and all(c in _OPERATOR_CHARS for c in tok):
            if words:
                parts.append(_normalize_simple(words))
                words = []
            op = ";" if tok in _SEPARATORS else tok
            if op == ";" and (not parts or parts[-1] == (";",)):
                continue
            parts.append((op,))
        else:
            words.append(tok)
    if words:
        parts.append(_normalize_simple(words))
    while parts and parts[-1] == (";",):
        parts.pop()
    return tuple(parts)


def commands_of(action: Action, argument: str) -> list[str] | None:
    """The command strings of an action (None when a call lacks a string `argument`)."""
    if not action.tool_calls:
        return [action.text]
    out = []
    for call in action.tool_calls:
        value = call.arguments.get(argument)
        if not isinstance(value, str):
            return None
        out.append(value)
    return out


def _rest(action: Action, argument: str) -> list[tuple[str, str]]:
    return [
        (c.name, canonical_json({k: v for k, v in c.arguments.items() if k != argument}))
        for c in action.tool_calls
    ]


@dataclass(frozen=True)
class ShellVerifier:
    argument: str = "command"
    sandbox: str | None = None
    compare_other_arguments: bool = True

    def __post_init__(self) -> None:
        if self.sandbox is not None:
            SANDBOXES.get(self.sandbox)  # fail at construction, listing the sandboxes

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.error is not None:
            raise ValueError(f"expected action is invalid: {expected.error}")
        if action.error is not None:
            return result(0.0, f"invalid_action:{action.error}")
        if bool(expected.tool_calls) != bool(action.tool_calls):
            return result(0.0, "kind_different")
        exp_cmds, act_cmds = (
            commands_of(expected, self.argument),
            commands_of(action, self.argument),
        )
        if exp_cmds is None:
            raise ValueError(f"expected call has no string argument {self.argument!r}")
        if act_cmds is None:
            return result(0.0, "command_missing")
        if [n for n, _ in _rest(expected, self.argument)] != [
            n for n, _ in _rest(action, self.argument)
        ]:
            return result(0.0, "name_different")
        if self.compare_other_arguments and _rest(expected, self.argument) != _rest(
            action, self.argument
        ):
            return result(0.0, "other_arguments_different")
        try:
            exp_forms = [normalize_command(c) for c in exp_cmds]
        except ValueError as e:
            raise ValueError(f"expected command does not parse: {e}") from None
        try:
            act_forms = [normalize_command(c) for c in act_cmds]
        except ValueError:
            act_forms = None
        if act_forms is not None and exp_forms == act_forms:
            return result(1.0, "same_command")
        if self.sandbox is None:
            return result(0.0, "unparsable_command" if act_forms is None else "different_command")
        return self._compare_in_sandbox(state, exp_cmds, act_cmds)

    def _compare_in_sandbox(
        self, state: VerifyState, exp_cmds: list[str], act_cmds: list[str]
    ) -> VerifyResult:
        factory = SANDBOXES.get(self.sandbox)
        exp_box, act_box = factory(state), factory(state)
        exp_runs = [exp_box.run(c) for c in exp_cmds]
        act_runs = [act_box.run(c) for c in act_cmds]
        same_output = "".join(r.output for r in exp_runs) == "".join(r.output for r in act_runs)
        same_ok = all(r.ok for r in exp_runs) == all(r.ok for r in act_runs)
        same_state = exp_runs[-1].state_digest == act_runs[-1].state_digest
        reward = float(same_output and same_ok and same_state)
        return result(
            reward,
            "same_effect" if reward else "different_effect",
            same_output=same_output,
            same_ok=same_ok,
            same_state=same_state,
        )


VERIFIERS.register("shell", ShellVerifier)
