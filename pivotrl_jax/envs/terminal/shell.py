"""The shell: expands words (`~`, globs) and runs chains of pipelines against a VirtualFS.

>>> sh = Shell(VirtualFS.empty())
>>> sh.run("mkdir -p logs && echo 'a b' > logs/x.log; ls logs").output
'x.log\\n'
>>> sh.run("cat nope").ok
False
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass

from pivotrl_jax.envs.terminal import search  # noqa: F401  (registers the reading commands)
from pivotrl_jax.envs.terminal.commands import COMMANDS, Out
from pivotrl_jax.envs.terminal.fs import HOME, FsError, VirtualFS
from pivotrl_jax.envs.terminal.syntax import Command, ShellSyntaxError, Word, parse

MAX_OUTPUT_CHARS = 2000


@dataclass(frozen=True)
class ShellResult:
    """What one command line printed (stdout and stderr interleaved) and whether it succeeded."""

    output: str
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 0


def glob(fs: VirtualFS, pattern: str) -> list[str]:
    """Sorted paths matching an fnmatch `pattern` component by component, spelled as written
    (relative stays relative); a leading `.` is matched only by a literal `.`."""
    absolute = pattern.startswith("/")
    parts = pattern.split("/")
    found = [("/" if absolute else "", "/" if absolute else fs.cwd)]
    for k, part in enumerate(parts[1:] if absolute else parts):
        last = k == len(parts) - (2 if absolute else 1)
        nxt = []
        for shown, path in found:
            if part in ("", ".", ".."):
                if fs.is_dir(path):
                    nxt.append((shown + part + ("" if last else "/"), fs.resolve(f"{path}/{part}")))
                continue
            if not fs.is_dir(path):
                continue
            for name in fs.listdir(path):
                if name.startswith(".") and not part.startswith("."):
                    continue
                if fnmatch.fnmatchcase(name, part):
                    nxt.append((shown + name + ("" if last else "/"), posixpath.join(path, name)))
        found = nxt
    return sorted(shown for shown, _ in found)


def _tilde(text: str) -> str:
    return HOME + text[1:] if text == "~" or text.startswith("~/") else text


def expand(fs: VirtualFS, word: Word) -> list[str]:
    if word.pattern is not None:
        matches = glob(fs, _tilde(word.pattern))
        if matches:
            return matches
    return [_tilde(word.text)]


class Shell:
    """A stateful shell session over one VirtualFS (the filesystem is changed in place)."""

    def __init__(self, fs: VirtualFS):
        self.fs = fs

    def run(self, line: str) -> ShellResult:
        try:
            chain = parse(line)
        except ShellSyntaxError as e:
            return ShellResult(f"bash: {e}\n", 2)
        output: list[str] = []
        status = 0
        for joiner, pipeline in chain:
            if (joiner == "&&" and status != 0) or (joiner == "||" and status == 0):
                continue
            stdin = ""
            for cmd in pipeline:
                out = self._simple(cmd, stdin)
                output.append(out.stderr)
                stdin, status = out.stdout, out.status
            output.append(stdin)
        text = "".join(output)
        if len(text) > MAX_OUTPUT_CHARS:
            text = text[:MAX_OUTPUT_CHARS] + "\n[output truncated]\n"
        return ShellResult(text, status)

    def _simple(self, cmd: Command, stdin: str) -> Out:
        words = [w for word in cmd.argv for w in expand(self.fs, word)]
        name, args = words[0], words[1:]
        writes = []
        for op, target in cmd.redirects:
            targets = expand(self.fs, target)
            if len(targets) != 1:
                return Out(stderr=f"bash: {target.text}: ambiguous redirect\n", status=1)
            path = self.fs.resolve(targets[0])
            if op == "<":
                try:
                    stdin = self.fs.read(path)
                except FsError as e:
                    return Out(stderr=f"bash: {targets[0]}: {e}\n", status=1)
            else:
                try:  # the shell opens (and truncates) the target before the command runs
                    self.fs.write(path, "", append=op == ">>")
                except FsError as e:
                    return Out(stderr=f"bash: {targets[0]}: {e}\n", status=1)
                writes.append(path)
        if name not in COMMANDS:
            out = Out(stderr=f"bash: {name}: command not found\n", status=127)
        else:
            out = COMMANDS.get(name)(self.fs, args, stdin)
        if not writes:
            return out
        last = writes[-1]  # like bash, earlier targets were created and stay empty
        if self.fs.is_file(last):
            try:
                self.fs.write(last, out.stdout, append=True)
            except FsError as e:
                return Out(stderr=out.stderr + f"bash: write error: {e}\n", status=1)
        return Out(stdout="", stderr=out.stderr, status=out.status)
