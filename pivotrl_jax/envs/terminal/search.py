"""Reading and searching commands: cat, head, tail, wc, sort, grep, find, echo.

They read the filesystem (only `find -delete` changes it) and print what GNU tools would.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable

from pivotrl_jax.envs.terminal.commands import (
    Out,
    command,
    display_path,
    join_lines,
    split_lines,
)
from pivotrl_jax.envs.terminal.fs import FsError, VirtualFS


@command("find", raw=True)
def find(fs, flags, values, operands, stdin):
    roots: list[str] = []
    args = list(operands)
    while args and not args[0].startswith("-"):
        roots.append(args.pop(0))
    tests: list[Callable[[str, int], bool]] = []
    maxdepth, delete = None, False
    while args:
        opt = args.pop(0)
        if opt == "-delete":
            delete = True
            continue
        if not args:
            return Out(stderr=f"find: missing argument to '{opt}'\n", status=1)
        val = args.pop(0)
        if opt == "-name":
            tests.append(lambda p, d, v=val: fnmatch.fnmatchcase(posixpath.basename(p), v))
        elif opt == "-iname":
            tests.append(
                lambda p, d, v=val: fnmatch.fnmatchcase(posixpath.basename(p).lower(), v.lower())
            )
        elif opt == "-type" and val in ("f", "d"):
            tests.append(lambda p, d, v=val: fs.is_dir(p) == (v == "d"))
        elif opt == "-maxdepth" and val.isdigit():
            maxdepth = int(val)
        else:
            return Out(stderr=f"find: unknown predicate '{opt}'\n", status=1)
    out, err, found = [], [], []
    for op in roots or ["."]:
        root = fs.resolve(op)
        if not fs.exists(root):
            err.append(f"find: '{op}': No such file or directory\n")
            continue
        for path in fs.walk(root):
            depth = 0 if path == root else path[len(root) :].strip("/").count("/") + 1
            if maxdepth is not None and depth > maxdepth:
                continue
            if all(t(path, depth) for t in tests):
                found.append(path)
                out.append(display_path(op, path, root))
    if delete:
        for path in reversed(found):
            if fs.is_dir(path) and fs.listdir(path):
                err.append(f"find: cannot delete '{path}': Directory not empty\n")
            else:
                fs.remove(path)
        out = []
    return Out(stdout=join_lines(out), stderr="".join(err), status=1 if err else 0)


def _read_operands(fs: VirtualFS, name: str, operands: list[str], stdin: str):
    """[(operand, text)] for each readable operand (stdin when none), and error lines."""
    if not operands:
        return [("-", stdin)], []
    texts, errors = [], []
    for op in operands:
        try:
            texts.append((op, fs.read(fs.resolve(op))))
        except FsError as e:
            errors.append(f"{name}: {op}: {e}\n")
    return texts, errors


@command("cat")
def cat(fs, flags, values, operands, stdin):
    texts, errors = _read_operands(fs, "cat", operands, stdin)
    return Out("".join(t for _, t in texts), "".join(errors), 1 if errors else 0)


def _head_tail(name: str, take: Callable[[list[str], int], list[str]]) -> None:
    @command(name, valued="n")
    def run(fs, flags, values, operands, stdin):
        count = values.get("n", "10")
        if not count.lstrip("-").isdigit():
            return Out(stderr=f"{name}: invalid number of lines: '{count}'\n", status=1)
        texts, errors = _read_operands(fs, name, operands, stdin)
        blocks = []
        for op, text in texts:
            head = f"==> {op} <==\n" if len(texts) > 1 else ""
            blocks.append(head + join_lines(take(split_lines(text), abs(int(count)))))
        return Out("\n".join(blocks), "".join(errors), 1 if errors else 0)


_head_tail("head", lambda lines, k: lines[:k])
_head_tail("tail", lambda lines, k: lines[len(lines) - k :] if k else [])


@command("wc", short="lwc")
def wc(fs, flags, values, operands, stdin):
    """GNU layout: a lone number is printed bare; otherwise numbers are right-aligned to the
    width of the inputs' total size (7 when reading a pipe)."""
    texts, errors = _read_operands(fs, "wc", operands, stdin)
    picked = [f for f in "lwc" if f in flags] or ["l", "w", "c"]
    sizes = [len(t.encode()) for _, t in texts]
    width = 7 if not operands else len(str(sum(sizes)))
    if len(picked) == 1 and len(texts) == 1:
        width = 1
    rows, totals = [], {f: 0 for f in picked}

    def row(counts: dict[str, int], label: str) -> str:
        return " ".join(str(counts[f]).rjust(width) for f in picked) + label

    for op, text in texts:
        counts = {"l": text.count("\n"), "w": len(text.split()), "c": len(text.encode())}
        for f in picked:
            totals[f] += counts[f]
        rows.append(row(counts, "" if op == "-" else f" {op}"))
    if len(texts) > 1:
        rows.append(row(totals, " total"))
    return Out(join_lines(rows), "".join(errors), 1 if errors else 0)


@command("sort", short="rnu")
def sort(fs, flags, values, operands, stdin):
    texts, errors = _read_operands(fs, "sort", operands, stdin)
    lines = [line for _, t in texts for line in split_lines(t)]
    if "n" in flags:
        num = re.compile(r"\s*(-?\d+(?:\.\d*)?)")
        lines.sort(key=lambda s: (float(m.group(1)) if (m := num.match(s)) else 0.0, s))
    else:
        lines.sort()
    if "r" in flags:
        lines.reverse()
    if "u" in flags:
        lines = list(dict.fromkeys(lines))
    return Out(join_lines(lines), "".join(errors), 1 if errors else 0)


# Python's re backtracks: a repeated group ((a+)+, (a|aa)*) or a backreference can take
# exponential time, and k unbounded repeats (.*.*x) time ~ length^(k+1). No task needs more, so
# grep refuses such patterns and matches the first MATCH_CHARS characters of each line: the
# worst accepted pattern then costs milliseconds per line.
_RISKY_PATTERN = re.compile(r"\)\s*[+*?{]|\\[1-9]")
_UNBOUNDED_REPEAT = re.compile(r"(?<!\\)(?:[*+]|\{\d*,\})")
MAX_UNBOUNDED_REPEATS = 2
MATCH_CHARS = 256
_GREP_LONG = {
    "--recursive": "r",
    "--ignore-case": "i",
    "--line-number": "n",
    "--files-with-matches": "l",
    "--count": "c",
    "--invert-match": "v",
    "--word-regexp": "w",
    "--fixed-strings": "F",
}


@command("grep", short="rRinlcvwFEHh", long=_GREP_LONG)
def grep(fs, flags, values, operands, stdin):
    if not operands:
        return Out(stderr="Usage: grep [OPTION]... PATTERNS [FILE]...\n", status=2)
    pattern, targets = operands[0], operands[1:]
    recursive = bool(flags & {"r", "R"})
    source = re.escape(pattern) if "F" in flags else pattern
    if "w" in flags:
        source = rf"(?<!\w)(?:{source})(?!\w)"
    risky = _RISKY_PATTERN.search(pattern)
    if risky or len(_UNBOUNDED_REPEAT.findall(pattern)) > MAX_UNBOUNDED_REPEATS:
        return Out(stderr="grep: pattern too complex\n", status=2)
    try:
        regex = re.compile(source, re.IGNORECASE if "i" in flags else 0)
    except re.error as e:
        return Out(stderr=f"grep: invalid pattern: {e}\n", status=2)
    files: list[tuple[str, str]] = []  # (display, absolute path)
    errors: list[str] = []
    if not targets and recursive:
        files = [(display_path("", p, fs.cwd), p) for p in fs.walk(fs.cwd) if fs.is_file(p)]
    for op in targets:
        path = fs.resolve(op)
        if fs.is_dir(path):
            if recursive:
                root_op = op.rstrip("/") or "/"
                files += [
                    (display_path(root_op, p, path), p) for p in fs.walk(path) if fs.is_file(p)
                ]
            else:
                errors.append(f"grep: {op}: Is a directory\n")
        elif fs.is_file(path):
            files.append((op, path))
        else:
            errors.append(f"grep: {op}: No such file or directory\n")
    many = (len(files) > 1 or recursive or "H" in flags) and "h" not in flags
    inputs = [(d, fs.files[p]) for d, p in files] if (targets or recursive) else [("-", stdin)]
    out, matched = [], False
    for display, text in inputs:
        hits = [
            (k, line)
            for k, line in enumerate(split_lines(text), 1)
            if bool(regex.search(line[:MATCH_CHARS])) != ("v" in flags)
        ]
        matched = matched or bool(hits)
        prefix = f"{display}:" if many else ""
        if "l" in flags:
            out += [display] if hits else []
        elif "c" in flags:
            out.append(f"{prefix}{len(hits)}")
        else:
            out += [f"{prefix}{f'{k}:' if 'n' in flags else ''}{line}" for k, line in hits]
    return Out(join_lines(out), "".join(errors), 2 if errors else (0 if matched else 1))


@command("echo", short="n")
def echo(fs, flags, values, operands, stdin):
    return Out(stdout=" ".join(operands) + ("" if "n" in flags else "\n"))
