"""Terminal task kinds: each adds its files to a filler workspace, phrases the instruction and
computes the goal filesystem by direct dictionary edits (never through the shell), so the goal
is an independent reference for the shell's semantics.

`KINDS` holds tasks whose goal is reached by commands the instruction already determines;
`CHAINED_KINDS` holds tasks where a later command needs what an earlier one printed (the file
that mentions a word, the number of lines). Each entry is `build(rng, fs) -> KindDraw`.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pivotrl_jax.envs.terminal.fs import HOME, VirtualFS
from pivotrl_jax.registry import Registry


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


LINE_WORDS = words(
    "start stop ok done check load save user data value error warn info open close ready sent "
    "new old item"
)
KEYWORDS = words("budget invoice deadline migration holiday release password meeting")
STEMS = words("alpha beta gamma delta report summary todo plan main index users sales draft setup")
FILLER_DIRS = ("docs", "notes", "src", "data", "scripts", "tmp")


@dataclass(frozen=True)
class KindDraw:
    instruction: str
    goal: VirtualFS
    params: dict[str, Any]
    answer: str | None = None  # what the final message must contain (questions)
    report: str = ""  # the fact a final message must state (the answer, or what changed)


Build = Callable[[random.Random, VirtualFS], KindDraw]
KINDS: Registry[Build] = Registry("terminal task kind")
CHAINED_KINDS: Registry[Build] = Registry("chained terminal task kind")

# How each kind's request is phrased: `str.format` templates over the kind's fields. They are
# data, so a solver that reads only the prompt can parse a request (`envs/oracle.py`).
INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "archive_files": (
        "Move all {ext} files from {src} into {dst}.",
        "Please put every {ext} file that is in {src}/ into the {dst} folder.",
        "I want the {ext} files in {src} moved to {dst}.",
        "Can you move the {ext} files out of {src} and into {dst}?",
    ),
    "make_file": (
        "Create a directory {dir} and put a file {name} in it containing the line '{content}'.",
        "Make the folder {dir} with a file named {name} that says '{content}'.",
        "I need {dir}/{name} with the text '{content}' in it. The folder does not exist yet.",
    ),
    "clean_tmp": (
        "Delete every .tmp file under {dir}, including subfolders.",
        "Remove all the .tmp files anywhere inside {dir}.",
        "Clean up {dir}: delete all files ending in .tmp, also those in its subdirectories.",
    ),
    "backup_dir": (
        "Make a copy of the {src} folder called {dst}.",
        "Back up {src}: copy the whole directory to {dst}.",
        "Please duplicate the directory {src} as {dst}.",
    ),
    "rename_file": (
        "Rename {dir}/{old} to {new}.",
        "In {dir}, change the name of {old} to {new}.",
        "Please rename the file {old} in {dir} so that it is called {new}.",
    ),
    "append_line": (
        "Add the line '{line}' to the end of {path}.",
        "Append {line} as a new last line of {path}.",
        "Please add a line saying {line} at the bottom of {path}.",
    ),
    "find_word": (
        "Which file in {dir} mentions the word {word}?",
        "Find the file under {dir} that contains '{word}' and tell me its name.",
        "One file somewhere in {dir} has the word {word} in it. Which one is it?",
    ),
    "count_lines": (
        "How many lines are in {path}?",
        "Count the lines of {path} for me.",
        "Tell me the number of lines in the file {path}.",
    ),
    "count_matches": (
        "How many lines of {path} contain the word {word}?",
        "Count the lines in {path} that mention {word}.",
        "In {path}, on how many lines does '{word}' appear?",
    ),
    "move_match": (
        "Move the file in {dir} that mentions {word} into {dst}.",
        "One file under {dir} contains the word {word}. Put it in the {dst} folder.",
        "Find the file in {dir} with '{word}' in it and move it to {dst}.",
    ),
    "count_into_file": (
        "Count the lines of {path} and write the number to {out}.",
        "Put the number of lines in {path} into a new file {out}.",
        "How many lines does {path} have? Save just that number in {out}.",
    ),
}


def phrase(rng: random.Random, kind: str, **fields: str) -> str:
    return rng.choice(INSTRUCTIONS[kind]).format(**fields)


def line(rng: random.Random) -> str:
    return " ".join(rng.choice(LINE_WORDS) for _ in range(rng.randint(2, 4)))


def text(rng: random.Random, lines: int) -> str:
    return "".join(line(rng) + "\n" for _ in range(lines))


def _fresh(rng: random.Random, fs: VirtualFS, names: tuple[str, ...] | list[str]) -> str:
    """A name from `names` that is not yet in the home directory."""
    free = [n for n in names if not fs.exists(f"{HOME}/{n}")]
    return rng.choice(free)


def _files(rng: random.Random, fs: VirtualFS, d: str, exts: list[str], taken=()) -> list[str]:
    """Create one file per extension in `exts` under home-relative `d`; their names."""
    fs.mkdir(f"{HOME}/{d}", parents=True)
    stems = rng.sample([s for s in STEMS if s not in taken], len(exts))
    names = [s + e for s, e in zip(stems, exts)]
    for name in names:
        fs.write(f"{HOME}/{d}/{name}", text(rng, rng.randint(1, 3)))
    return names


def workspace(rng: random.Random) -> VirtualFS:
    """A home directory with 2-3 filler directories of 1-3 small files each."""
    fs = VirtualFS.empty()
    for d in rng.sample(FILLER_DIRS, rng.randint(2, 3)):
        _files(rng, fs, d, [rng.choice([".txt", ".md", ".py"]) for _ in range(rng.randint(1, 3))])
    return fs


# ---------------------------------------------------------------------------------------------
# Kinds that change files


@KINDS.register("archive_files")
def archive_files(rng: random.Random, fs: VirtualFS) -> KindDraw:
    src = _fresh(rng, fs, ["logs", "output", "runs"])
    dst = _fresh(rng, fs, ["archive", "old", "saved"])
    ext = rng.choice([".log", ".csv", ".txt"])
    others = [e for e in (".md", ".py", ".json") if e != ext]
    moved = _files(rng, fs, src, [ext] * rng.randint(2, 4))
    _files(rng, fs, src, rng.sample(others, rng.randint(1, 2)), taken={n[:-4] for n in moved})
    if rng.random() < 0.5:
        _files(rng, fs, dst, [rng.choice(others)] * rng.randint(0, 1))
    goal = fs.copy()
    goal.dirs.add(f"{HOME}/{dst}")
    for name in moved:
        goal.files[f"{HOME}/{dst}/{name}"] = goal.files.pop(f"{HOME}/{src}/{name}")
    instruction = phrase(rng, "archive_files", ext=ext, src=src, dst=dst)
    params = {
        "src": src,
        "dst": dst,
        "ext": ext,
        "moved": moved,
        "dst_exists": fs.is_dir(f"{HOME}/{dst}"),
    }
    return KindDraw(instruction, goal, params, report=dst)


@KINDS.register("make_file")
def make_file(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["reports", "output", "site", "notes/today", "projects/demo"])
    name = rng.choice(["summary.txt", "readme.md", "todo.txt", "result.txt"])
    content = line(rng)
    goal = fs.copy()
    goal.mkdir(f"{HOME}/{d}", parents=True)
    goal.files[f"{HOME}/{d}/{name}"] = content + "\n"
    instruction = phrase(rng, "make_file", dir=d, name=name, content=content)
    parents_exist = fs.is_dir(posixpath.dirname(f"{HOME}/{d}"))
    return KindDraw(
        instruction,
        goal,
        {"dir": d, "name": name, "content": content, "flat": parents_exist},
        report=name,
    )


@KINDS.register("clean_tmp")
def clean_tmp(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["build", "cache", "work"])
    sub = rng.choice(["sub", "parts", "out"])
    top = _files(rng, fs, d, [".tmp"] * rng.randint(1, 2) + [rng.choice([".txt", ".o"])])
    low = _files(rng, fs, f"{d}/{sub}", [".tmp"] * rng.randint(1, 2) + [".txt"])
    doomed = [f"{d}/{n}" for n in top if n.endswith(".tmp")] + [
        f"{d}/{sub}/{n}" for n in low if n.endswith(".tmp")
    ]
    goal = fs.copy()
    for path in doomed:
        del goal.files[f"{HOME}/{path}"]
    instruction = phrase(rng, "clean_tmp", dir=d)
    return KindDraw(instruction, goal, {"dir": d, "sub": sub, "doomed": doomed}, report=d)


@KINDS.register("backup_dir")
def backup_dir(rng: random.Random, fs: VirtualFS) -> KindDraw:
    src = _fresh(rng, fs, ["config", "settings", "site"])
    dst = rng.choice([f"{src}_backup", f"backup_{src}", f"{src}.bak"])
    _files(rng, fs, src, [".conf", ".txt", ".json"][: rng.randint(2, 3)])
    goal = fs.copy()
    goal.copy_tree(f"{HOME}/{src}", f"{HOME}/{dst}")
    instruction = phrase(rng, "backup_dir", src=src, dst=dst)
    return KindDraw(instruction, goal, {"src": src, "dst": dst}, report=dst)


@KINDS.register("rename_file")
def rename_file(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = rng.choice(sorted(p[len(HOME) + 1 :] for p in fs.dirs if p.startswith(HOME + "/")))
    old = rng.choice(fs.listdir(f"{HOME}/{d}"))
    stem, ext = posixpath.splitext(old)
    names = [f"{stem}_old{ext}", f"final{ext}", f"{stem}2{ext}", f"old_{old}"]
    new = rng.choice([n for n in names if not fs.exists(f"{HOME}/{d}/{n}")])
    goal = fs.copy()
    goal.files[f"{HOME}/{d}/{new}"] = goal.files.pop(f"{HOME}/{d}/{old}")
    instruction = phrase(rng, "rename_file", dir=d, old=old, new=new)
    return KindDraw(instruction, goal, {"dir": d, "old": old, "new": new}, report=new)


@KINDS.register("append_line")
def append_line(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["config", "etc", "settings"])
    name = rng.choice(["app.conf", "server.conf", "settings.ini"])
    fs.mkdir(f"{HOME}/{d}")
    keys = rng.sample(["mode", "debug", "port", "level", "color", "cache"], 3)
    values = ["fast", "off", "on", "8080", "high", "blue"]
    fs.write(f"{HOME}/{d}/{name}", "".join(f"{k}={rng.choice(values)}\n" for k in keys[:2]))
    new = f"{keys[2]}={rng.choice(values)}"
    goal = fs.copy()
    goal.files[f"{HOME}/{d}/{name}"] += new + "\n"
    path = f"{d}/{name}"
    instruction = phrase(rng, "append_line", line=new, path=path)
    return KindDraw(instruction, goal, {"path": path, "line": new}, report=new)


# ---------------------------------------------------------------------------------------------
# Questions (the filesystem must stay as it is)


def _plant(rng: random.Random, fs: VirtualFS, d: str) -> tuple[str, str]:
    """A new folder `d` of 3-4 files (one in a subfolder), all with distinct names across the
    workspace; a keyword is added to one of them. Returns (word, home-relative path)."""
    taken = {posixpath.splitext(posixpath.basename(p))[0] for p in fs.files}
    names = _files(rng, fs, d, [".txt", ".md", ".txt"][: rng.randint(2, 3)], taken=taken)
    sub = rng.choice(["old", "misc"])
    taken |= {n.split(".")[0] for n in names}
    names += [f"{sub}/{n}" for n in _files(rng, fs, f"{d}/{sub}", [".txt"], taken=taken)]
    word = rng.choice(KEYWORDS)
    hit = f"{d}/{rng.choice(names)}"
    fs.files[f"{HOME}/{hit}"] += f"{line(rng)} {word} {line(rng)}\n"
    return word, hit


@KINDS.register("find_word")
def find_word(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["docs", "notes", "wiki"])
    word, hit = _plant(rng, fs, d)
    instruction = phrase(rng, "find_word", dir=d, word=word)
    answer = posixpath.basename(hit)
    return KindDraw(instruction, fs.copy(), {"dir": d, "word": word, "hit": hit}, answer, answer)


@KINDS.register("count_lines")
def count_lines(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["data", "tables", "exports"])
    name = rng.choice(["users.csv", "sales.csv", "items.csv"])
    rows = rng.randint(3, 9)
    fs.mkdir(f"{HOME}/{d}")
    fs.write(
        f"{HOME}/{d}/{name}",
        "".join(f"{rng.choice(STEMS)},{rng.randint(1, 99)}\n" for _ in range(rows)),
    )
    path = f"{d}/{name}"
    instruction = phrase(rng, "count_lines", path=path)
    return KindDraw(instruction, fs.copy(), {"path": path, "rows": rows}, str(rows), str(rows))


@KINDS.register("count_matches")
def count_matches(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["logs", "runs", "output"])
    name = rng.choice(["server.log", "app.log", "jobs.log"])
    word = rng.choice(["error", "warn", "ready"])
    body = ""
    while word not in body:
        body = text(rng, rng.randint(4, 8))
    fs.mkdir(f"{HOME}/{d}")
    fs.write(f"{HOME}/{d}/{name}", body)
    count = sum(word in row for row in body.splitlines())
    path = f"{d}/{name}"
    instruction = phrase(rng, "count_matches", path=path, word=word)
    params = {"path": path, "word": word, "count": count}
    return KindDraw(instruction, fs.copy(), params, str(count), str(count))


# ---------------------------------------------------------------------------------------------
# Chained: a later command needs an earlier command's output


@CHAINED_KINDS.register("move_match")
def move_match(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["docs", "notes", "wiki"])
    word, hit = _plant(rng, fs, d)
    dst = _fresh(rng, fs, ["keep", "flagged", "review"])
    if rng.random() < 0.5:
        fs.mkdir(f"{HOME}/{dst}")
    goal = fs.copy()
    goal.dirs.add(f"{HOME}/{dst}")
    goal.files[f"{HOME}/{dst}/{posixpath.basename(hit)}"] = goal.files.pop(f"{HOME}/{hit}")
    instruction = phrase(rng, "move_match", dir=d, word=word, dst=dst)
    params = {
        "dir": d,
        "word": word,
        "hit": hit,
        "dst": dst,
        "dst_exists": fs.is_dir(f"{HOME}/{dst}"),
    }
    return KindDraw(instruction, goal, params, report=dst)


@CHAINED_KINDS.register("count_into_file")
def count_into_file(rng: random.Random, fs: VirtualFS) -> KindDraw:
    d = _fresh(rng, fs, ["data", "tables", "exports"])
    name = rng.choice(["users.csv", "sales.csv", "items.csv"])
    rows = rng.randint(3, 9)
    fs.mkdir(f"{HOME}/{d}")
    body = "".join(f"{rng.choice(STEMS)},{rng.randint(1, 99)}\n" for _ in range(rows))
    fs.write(f"{HOME}/{d}/{name}", body)
    path, out = f"{d}/{name}", f"{d}/count.txt"
    goal = fs.copy()
    goal.files[f"{HOME}/{out}"] = f"{rows}\n"
    instruction = phrase(rng, "count_into_file", path=path, out=out)
    return KindDraw(instruction, goal, {"path": path, "out": out, "rows": rows}, report=str(rows))
