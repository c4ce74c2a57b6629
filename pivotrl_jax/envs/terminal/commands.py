"""The simulated coreutils: each command is a pure function of the filesystem and its words.

`COMMANDS` maps a name to `fn(fs, args, stdin) -> Out`; commands change `fs` in place and never
touch the host. Messages follow GNU coreutils' wording closely enough for a model to learn from.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from pivotrl_jax.envs.terminal.fs import HOME, FsError, VirtualFS, parent
from pivotrl_jax.registry import Registry


@dataclass(frozen=True)
class Out:
    stdout: str = ""
    stderr: str = ""
    status: int = 0


CommandFn = Callable[[VirtualFS, list[str], str], Out]
COMMANDS: Registry[CommandFn] = Registry("shell command")


class UsageError(Exception):
    pass


def parse_flags(
    args: list[str], short: str, long: dict[str, str] | None = None, valued: str = ""
) -> tuple[set[str], dict[str, str], list[str]]:
    """(flags, flag values, operands): combined short flags (`-rf`), `--long` names mapped to
    short ones, `valued` flags taking the next word (`-n 3` or `-n3`), `--` ending options."""
    flags: set[str] = set()
    values: dict[str, str] = {}
    operands: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            operands.extend(it)
        elif arg.startswith("--") and long is not None and arg in long:
            flags.add(long[arg])
        elif arg.startswith("-") and len(arg) > 1 and not arg[1:].isdigit():
            body = arg[1:]
            for k, ch in enumerate(body):
                if ch in valued:
                    value = body[k + 1 :] or next(it, None)
                    if value is None:
                        raise UsageError(f"option requires an argument -- '{ch}'")
                    values[ch] = value
                    break
                if ch not in short:
                    raise UsageError(f"invalid option -- '{ch}'")
                flags.add(ch)
        else:
            operands.append(arg)
    return flags, values, operands


def command(
    name: str,
    short: str = "",
    long: dict[str, str] | None = None,
    valued: str = "",
    raw: bool = False,
):
    """Register `fn(fs, flags, values, operands, stdin) -> Out` under `name`, parsing flags
    (`raw`: every word is an operand, for `find`'s own expression syntax)."""

    def wrap(fn):
        def run(fs: VirtualFS, args: list[str], stdin: str) -> Out:
            if raw:
                return fn(fs, set(), {}, list(args), stdin)
            try:
                flags, values, operands = parse_flags(args, short, long, valued)
            except UsageError as e:
                return Out(stderr=f"{name}: {e}\n", status=2)
            return fn(fs, flags, values, operands, stdin)

        COMMANDS.register(name, run)
        return fn

    return wrap


def split_lines(text: str) -> list[str]:
    return text.split("\n")[:-1] if text.endswith("\n") else (text.split("\n") if text else [])


def join_lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def display_path(operand: str, path: str, root: str) -> str:
    """How `find`/`grep -r` print `path` found below `root`, reached through `operand`."""
    rel = path[len(root) :].lstrip("/")
    if not rel:
        return operand
    return rel if operand == "" else posixpath.join(operand, rel)


# ---------------------------------------------------------------------------------------------
# Navigation and listing


@command("pwd")
def pwd(fs, flags, values, operands, stdin):
    return Out(stdout=fs.cwd + "\n")


@command("cd")
def cd(fs, flags, values, operands, stdin):
    if len(operands) > 1:
        return Out(stderr="cd: too many arguments\n", status=1)
    target = fs.resolve(operands[0]) if operands else HOME
    shown = operands[0] if operands else HOME
    if fs.is_file(target):
        return Out(stderr=f"cd: {shown}: Not a directory\n", status=1)
    if not fs.is_dir(target):
        return Out(stderr=f"cd: {shown}: No such file or directory\n", status=1)
    fs.cwd = target
    return Out()


@command("ls", short="a1A")
def ls(fs, flags, values, operands, stdin):
    names = operands or ["."]
    err, files, dirs = [], [], []
    for op in names:
        path = fs.resolve(op)
        if fs.is_dir(path):
            dirs.append((op, path))
        elif fs.is_file(path):
            files.append(op)
        else:
            err.append(f"ls: cannot access '{op}': No such file or directory\n")
    blocks = [join_lines(sorted(files))] if files else []
    for op, path in sorted(dirs):  # GNU lists operands in name order
        entries = [n for n in fs.listdir(path) if flags & {"a", "A"} or not n.startswith(".")]
        if "a" in flags:
            entries = [".", "..", *entries]
        head = f"{op}:\n" if len(names) > 1 else ""
        blocks.append(head + join_lines(entries))
    return Out(stdout="\n".join(blocks), stderr="".join(err), status=2 if err else 0)


# ---------------------------------------------------------------------------------------------
# Changing


@command("mkdir", short="p", long={"--parents": "p"})
def mkdir(fs, flags, values, operands, stdin):
    if not operands:
        return Out(stderr="mkdir: missing operand\n", status=1)
    errors = []
    for op in operands:
        try:
            fs.mkdir(fs.resolve(op), parents="p" in flags)
        except FsError as e:
            errors.append(f"mkdir: cannot create directory '{op}': {e}\n")
    return Out(stderr="".join(errors), status=1 if errors else 0)


@command("rmdir")
def rmdir(fs, flags, values, operands, stdin):
    errors = []
    for op in operands:
        path = fs.resolve(op)
        if not fs.is_dir(path):
            why = "Not a directory" if fs.is_file(path) else "No such file or directory"
            errors.append(f"rmdir: failed to remove '{op}': {why}\n")
        elif fs.listdir(path):
            errors.append(f"rmdir: failed to remove '{op}': Directory not empty\n")
        else:
            fs.remove(path)
    return Out(stderr="".join(errors), status=1 if errors else 0)


@command("touch")
def touch(fs, flags, values, operands, stdin):
    if not operands:
        return Out(stderr="touch: missing file operand\n", status=1)
    errors = []
    for op in operands:
        path = fs.resolve(op)
        if fs.exists(path):
            continue
        try:
            fs.write(path, "")
        except FsError as e:
            errors.append(f"touch: cannot touch '{op}': {e}\n")
    return Out(stderr="".join(errors), status=1 if errors else 0)


@command("rm", short="rRfd", long={"--recursive": "r", "--force": "f"})
def rm(fs, flags, values, operands, stdin):
    if not operands and "f" not in flags:
        return Out(stderr="rm: missing operand\n", status=1)
    errors = []
    for op in operands:
        path = fs.resolve(op)
        if posixpath.basename(op.rstrip("/")) in (".", "..") or path == "/":
            errors.append(f"rm: refusing to remove '{op}'\n")
        elif fs.is_dir(path) and not flags & {"r", "R"}:
            errors.append(f"rm: cannot remove '{op}': Is a directory\n")
        elif fs.exists(path):
            fs.remove(path)
        elif "f" not in flags:
            errors.append(f"rm: cannot remove '{op}': No such file or directory\n")
    return Out(stderr="".join(errors), status=1 if errors else 0)


def _transfer(name: str, fs: VirtualFS, operands: list[str], recursive: bool, move: bool) -> Out:
    """`mv`/`cp`: several sources into a directory, or one source onto a new or existing path."""
    if len(operands) < 2:
        return Out(stderr=f"{name}: missing file operand\n", status=1)
    *sources, dest_op = operands
    dest = fs.resolve(dest_op)
    if len(sources) > 1 and not fs.is_dir(dest):
        return Out(stderr=f"{name}: target '{dest_op}' is not a directory\n", status=1)
    errors = []
    for op in sources:
        src = fs.resolve(op)
        target = posixpath.join(dest, posixpath.basename(src)) if fs.is_dir(dest) else dest
        if not fs.exists(src):
            errors.append(f"{name}: cannot stat '{op}': No such file or directory\n")
        elif fs.is_dir(src) and not recursive:
            errors.append(f"{name}: -r not specified; omitting directory '{op}'\n")
        elif target == src:
            errors.append(f"{name}: '{op}' and '{dest_op}' are the same file\n")
        elif fs.is_dir(src) and (target + "/").startswith(src.rstrip("/") + "/"):
            verb = "move" if move else "copy"
            errors.append(f"{name}: cannot {verb} '{op}' to a subdirectory of itself\n")
        elif fs.is_dir(target) and not fs.is_dir(src):
            errors.append(f"{name}: cannot overwrite directory '{target}' with non-directory\n")
        elif fs.is_file(target) and fs.is_dir(src):
            errors.append(f"{name}: cannot overwrite non-directory '{target}' with directory\n")
        elif move and fs.is_dir(target) and fs.listdir(target):
            errors.append(f"{name}: cannot move '{op}' to '{target}': Directory not empty\n")
        elif not fs.is_dir(parent(target)):
            errors.append(f"{name}: cannot create '{dest_op}': No such file or directory\n")
        else:
            try:
                fs.copy_tree(src, target)
            except FsError as e:
                errors.append(f"{name}: cannot create '{dest_op}': {e}\n")
                continue
            if move:
                fs.remove(src)
    return Out(stderr="".join(errors), status=1 if errors else 0)


@command("mv", short="f")
def mv(fs, flags, values, operands, stdin):
    return _transfer("mv", fs, operands, recursive=True, move=True)


@command("cp", short="rRfa", long={"--recursive": "r"})
def cp(fs, flags, values, operands, stdin):
    return _transfer("cp", fs, operands, recursive=bool(flags & {"r", "R", "a"}), move=False)
