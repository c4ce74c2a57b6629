"""The terminal environment: one `run_command` tool over a simulated shell.

The state at any turn is rebuilt from the messages alone (`replay`): the session in the system
prompt gives the task and its initial filesystem, and the earlier `run_command` calls are run
again in order. `TerminalSandbox` offers that state to the shell verifier (registered in
`pivotrl_jax.rewards.sandbox.SANDBOXES` as "terminal"), and `acceptable` compares two actions by
executing both (the terminal domain's functional verifier, `env_acceptable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pivotrl_jax.envs.base import Message, ToolSpec
from pivotrl_jax.envs.messages import function_spec, history_calls, tool_result
from pivotrl_jax.envs.progress import moves_toward
from pivotrl_jax.envs.sessions import find_session, session_line
from pivotrl_jax.envs.terminal.shell import Shell, ShellResult
from pivotrl_jax.envs.terminal.tasks import TOOL_NAME, TerminalTask, make_task
from pivotrl_jax.rewards.actions import parse_action
from pivotrl_jax.rewards.base import VerifyState
from pivotrl_jax.rewards.message import answers
from pivotrl_jax.rewards.sandbox import SANDBOXES, SandboxResult

TOOLS: list[ToolSpec] = [
    function_spec(TOOL_NAME, "Run a shell command.", {"command": {"type": "string"}}, ["command"])
]


def system_prompt(session: int) -> str:
    return "Shell at /home/user. Run commands, then reply. " + session_line(session)


def observation(result: ShellResult) -> str:
    """What the tool returns: the output, plus the exit code when the command failed."""
    return result.output if result.ok else f"{result.output}[exit code {result.status}]"


def _normal(tree):
    dirs, files = tree
    return dirs, tuple((p, text.rstrip("\n")) for p, text in files)


class TerminalEnv:
    def __init__(self, task: TerminalTask):
        self.task = task
        self.shell = Shell(task.initial.copy())
        self.tools = TOOLS
        self.final_text: str | None = None

    def initial_messages(self) -> list[Message]:
        return [
            {"role": "system", "content": system_prompt(self.task.session)},
            {"role": "user", "content": self.task.instruction},
        ]

    def step(self, message: Message) -> tuple[list[Message], bool]:
        calls = message.get("tool_calls") or []
        if not calls:
            self.final_text = message.get("content") or ""
            return [], True
        replies = []
        for c in calls:
            fn = c["function"]
            command = parse_action({"tool_calls": [c]})
            args = command.tool_calls[0].arguments if command.tool_calls else {}
            if fn["name"] != TOOL_NAME or not isinstance(args.get("command"), str):
                content = f"error: unknown tool call; use {TOOL_NAME} with a 'command' string"
            else:
                content = observation(self.shell.run(args["command"]))
            replies.append(tool_result(c["id"], content))
        return replies, False

    def success(self) -> bool:
        """The files match the goal (trailing newlines aside) and, for questions, the final
        message contains the answer."""
        if self.final_text is None:
            return False
        if _normal(self.shell.fs.tree()) != _normal(self.task.goal):
            return False
        return self.task.answer is None or answers([self.task.answer], self.final_text)


# ---------------------------------------------------------------------------------------------
# Rebuilding a turn's state


def commands(calls: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    return [a["command"] for n, a in calls if n == TOOL_NAME and isinstance(a.get("command"), str)]


def replay(messages: Sequence[Message]) -> tuple[TerminalTask, Shell]:
    """The task named by the system prompt and a shell in the state after `messages`."""
    session = find_session(list(messages))
    if session is None:
        raise ValueError("no 'Session N.' in the system prompt: cannot rebuild the terminal")
    task = make_task(session)
    shell = Shell(task.initial.copy())
    for command in commands(history_calls(messages)):
        shell.run(command)
    return task, shell


class TerminalSandbox:
    """A `CommandSandbox`: the terminal as it was after `messages`, advanced by each `run`."""

    def __init__(self, messages: Sequence[Message]):
        self.task, self.shell = replay(messages)

    def run(self, command: str) -> SandboxResult:
        result = self.shell.run(command)
        return SandboxResult(observation(result), self.shell.fs.digest(), result.ok)


def sandbox(state: VerifyState) -> TerminalSandbox:
    return TerminalSandbox(state.messages)


SANDBOXES.register("terminal", sandbox)


def _info(text: str, cwd: str) -> set[str]:
    """The words of `text`, with paths spelled relative to `cwd` (`./a`, `~/a` and
    `/home/user/a` all read `a` from home): the information, not its spelling."""
    words = text.replace(":", " ").split()
    prefixes = (cwd.rstrip("/") + "/", "./", "~/") if cwd != "/" else ("./",)
    out = set()
    for w in words:
        for prefix in prefixes:
            if w.startswith(prefix) and len(w) > len(prefix):
                w = w[len(prefix) :]
                break
        out.add(w.rstrip("/") if len(w) > 1 else w)
    return out


def _flat(tree) -> dict[tuple, Any]:
    dirs, files = tree
    return {("d", d): True for d in dirs} | {("f", p): t.rstrip("\n") for p, t in files}


def _run(shell: Shell, lines: list[str]):
    """Run `lines` on a copy of `shell`'s filesystem: (filesystem, all succeeded, what the output
    says beyond the command lines' own words)."""
    fs = shell.fs.copy()
    results = [Shell(fs).run(line) for line in lines]
    output = "".join(r.output for r in results)
    said = _info(output, shell.fs.cwd) - _info(" ".join(lines), shell.fs.cwd)
    return fs, all(r.ok for r in results), said


def acceptable(
    history: list[Message], expected: Any, candidate: Any, progress: bool = False
) -> bool:
    """Run both actions from the state after `history`.

    Tool calls are acceptable when they succeed (or the expected one failed too), leave the same
    filesystem and working directory, and print at least what the expected output says (its
    words beyond those of the command line, paths compared whatever their spelling). With
    `progress`, a successful command whose every file change takes its goal value is acceptable
    too where the expected command changes files, or where it is a no-op (changes nothing and
    says nothing, like `mkdir -p` of an existing folder). A final message is acceptable when it
    states the task's `report` fact (the answer to a question, or what was changed) and, when
    that fact is a number, no other number (`rewards.message.answers`)."""
    exp, cand = parse_action(expected), parse_action(candidate)
    if cand.kind == "invalid" or cand.kind != exp.kind:
        return False
    task, shell = replay(history)
    if exp.kind == "message":
        return answers([task.report], cand.text)
    runs = []
    for action in (exp, cand):
        lines = commands([(c.name, c.arguments) for c in action.tool_calls])
        if not lines or len(lines) != len(action.tool_calls):  # every call must be a command
            return False
        runs.append(_run(shell, lines))
    (exp_fs, exp_ok, exp_said), (cand_fs, cand_ok, cand_said) = runs
    if cand_fs.digest() == exp_fs.digest() and (cand_ok or not exp_ok) and exp_said <= cand_said:
        return True
    if not (progress and cand_ok):
        return False
    before = _flat(shell.fs.tree())
    expected_writes = _flat(exp_fs.tree()) != before
    no_op = exp_ok and exp_fs.digest() == shell.fs.digest() and not exp_said
    return (expected_writes or no_op) and moves_toward(
        before, _flat(cand_fs.tree()), _flat(task.goal)
    )


def make_env(task: TerminalTask) -> TerminalEnv:
    return TerminalEnv(task)


__all__ = [
    "TOOLS",
    "TerminalEnv",
    "TerminalSandbox",
    "acceptable",
    "make_env",
    "replay",
]
