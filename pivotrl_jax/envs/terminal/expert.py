"""The terminal expert: a plan of commands per task kind, drawn with variation.

Every step is one the state determines: the request and the outputs already seen say what to do
next, so a policy that reads only the prompt can match it (see `envs/oracle.py`). Variation
covers what a functional verifier must accept: path spellings (`logs`, `./logs`, `~/logs`,
`/home/user/logs`), flag spellings (`-rl`/`-Rl`, `mkdir`/`mkdir -p` where both work), quoting,
commands with the same output (`wc -l f`, `wc -l < f`, `grep -c '' f`), chains with `&&`
against separate steps, and one command against two with the same end effect (`mv` against
`cp` + `rm`, `cp -r` against `mkdir` + `cp`). No step names a file the state has not shown, and
no step is an optional look, so the expert's next action is never a coin flip. Final messages
always state the task's `report` fact (the answer, or what was changed).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pivotrl_jax.envs.base import Message, Policy
from pivotrl_jax.envs.messages import assistant_calls, assistant_text, scripted
from pivotrl_jax.envs.sessions import expert_rng
from pivotrl_jax.envs.terminal.fs import HOME
from pivotrl_jax.envs.terminal.tasks import DOMAIN, TOOL_NAME, TerminalTask
from pivotrl_jax.registry import Registry

PLANS: Registry[Callable[[TerminalTask, random.Random], tuple[list[str], str]]] = Registry(
    "terminal plan"
)


def path(rng: random.Random, p: str, is_dir: bool = False) -> str:
    """One spelling of home-relative path `p`."""
    form = rng.choices(["rel", "dot", "tilde", "abs"], weights=[6, 1, 2, 1])[0]
    spelled = {"rel": p, "dot": f"./{p}", "tilde": f"~/{p}", "abs": f"{HOME}/{p}"}[form]
    return spelled + "/" if is_dir and rng.random() < 0.25 else spelled


def quote(rng: random.Random, s: str) -> str:
    if not s or " " in s or "*" in s:
        return rng.choice([f"'{s}'", f'"{s}"'])
    return rng.choice([s, f"'{s}'", f'"{s}"'])


def mkdir(rng: random.Random, d: str, exists: bool, parents_exist: bool = True) -> str:
    """Create `d`: `mkdir -p` whenever it may exist or its parent may not, else either form."""
    flag = "-p " if exists or not parents_exist or rng.random() < 0.5 else ""
    return f"mkdir {flag}{path(rng, d)}"


def steps(rng: random.Random, *commands: str, chain: float = 0.3) -> list[str]:
    """`commands` as separate steps, or (with probability `chain`) one `&&` chain."""
    return [" && ".join(commands)] if rng.random() < chain else list(commands)


def count_command(rng: random.Random, p: str) -> str:
    """A command printing only the number of lines of `p` (with `p` itself, for `wc -l`)."""
    q, empty = path(rng, p), rng.choice(['""', "''"])
    return rng.choice([f"wc -l {q}", f"wc -l < {q}", f"cat {q} | wc -l", f"grep -c {empty} {q}"])


def list_matches(rng: random.Random, word: str, d: str) -> str:
    """`grep` printing the paths of the files under `d` that contain `word`."""
    flags = rng.choice(["-rl", "-Rl", "-lr", "-ril"])
    return f"grep {flags} {quote(rng, word)} {path(rng, d, True)}"


def expert(task: TerminalTask, seed: int) -> Policy:
    rng = expert_rng(DOMAIN, task.session, seed)
    commands, final = PLANS.get(task.kind)(task, rng)
    steps: list[Message] = [
        assistant_calls([(TOOL_NAME, {"command": c})], k) for k, c in enumerate(commands)
    ]
    return scripted([*steps, assistant_text(final)])


# ---------------------------------------------------------------------------------------------


@PLANS.register("archive_files")
def _archive(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    src, dst, ext = (task.params[k] for k in ("src", "dst", "ext"))
    move = f"mv {path(rng, src)}/*{ext} {path(rng, dst, True)}"
    out = steps(rng, mkdir(rng, dst, task.params["dst_exists"]), move)
    final = rng.choice(
        [
            f"Done. I moved the {ext} files from {src} to {dst}.",
            f"All {ext} files from {src} are now in {dst}.",
            f"The {ext} files are in {dst} now.",
        ]
    )
    return out, final


@PLANS.register("make_file")
def _make_file(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, name, content = task.params["dir"], task.params["name"], task.params["content"]
    make = mkdir(rng, d, exists=False, parents_exist=task.params["flat"])
    write = f"echo {quote(rng, content)} > {path(rng, f'{d}/{name}')}"
    if rng.random() < 0.25:
        out = [make, f"touch {path(rng, f'{d}/{name}')}", write]
    else:
        out = steps(rng, make, write)
    final = rng.choice(
        [
            f"Created {d}/{name} with the requested line.",
            f"Done: {d}/{name} now contains '{content}'.",
        ]
    )
    return out, final


@PLANS.register("clean_tmp")
def _clean_tmp(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d = task.params["dir"]
    pattern = rng.choice(["'*.tmp'", '"*.tmp"', "\\*.tmp"])
    kind = rng.choice(["", "-type f "])
    out = [f"find {path(rng, d)} {kind}-name {pattern} -delete"]
    final = rng.choice(
        [
            f"Deleted {len(task.params['doomed'])} .tmp files under {d}.",
            f"All .tmp files in {d} are gone now.",
        ]
    )
    return out, final


@PLANS.register("backup_dir")
def _backup(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    src, dst = task.params["src"], task.params["dst"]
    out = rng.choice(
        [
            [f"cp -r {path(rng, src)} {path(rng, dst)}"],
            [f"cp -R {path(rng, src, True)} {path(rng, dst)}"],
            [f"mkdir {path(rng, dst)}", f"cp {path(rng, src)}/* {path(rng, dst, True)}"],
        ]
    )
    final = rng.choice([f"Copied {src} to {dst}.", f"The backup is in {dst}."])
    return out, final


@PLANS.register("rename_file")
def _rename(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, old, new = task.params["dir"], task.params["old"], task.params["new"]
    src, dst = path(rng, f"{d}/{old}"), path(rng, f"{d}/{new}")
    out = [f"mv {src} {dst}"] if rng.random() < 0.75 else [f"cp {src} {dst}", f"rm {src}"]
    final = rng.choice([f"Renamed {old} to {new} in {d}.", f"{d}/{old} is now called {new}."])
    return out, final


@PLANS.register("append_line")
def _append(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, new = task.params["path"], task.params["line"]
    out = [f"echo {quote(rng, new)} >> {path(rng, p)}"]
    final = rng.choice([f"Added '{new}' at the end of {p}.", f"{p} now ends with {new}."])
    return out, final


@PLANS.register("find_word")
def _find_word(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, word, hit = task.params["dir"], task.params["word"], task.params["hit"]
    name = hit.rsplit("/", 1)[-1]
    final = rng.choice(
        [f"The word {word} is in {hit}.", f"It is {name}.", f"{hit} mentions {word}."]
    )
    return [list_matches(rng, word, d)], final


@PLANS.register("count_lines")
def _count_lines(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, rows = task.params["path"], task.params["rows"]
    final = rng.choice(
        [f"{p} has {rows} lines.", f"There are {rows} lines in {p}.", f"{rows} lines."]
    )
    return [count_command(rng, p)], final


@PLANS.register("count_matches")
def _count_matches(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, word, count = task.params["path"], task.params["word"], task.params["count"]
    q, w = path(rng, p), quote(rng, word)
    out = [rng.choice([f"grep -c {w} {q}", f"grep {w} {q} | wc -l"])]
    final = rng.choice(
        [f"{count} lines contain {word}.", f"The word {word} appears on {count} lines of {p}."]
    )
    return out, final


@PLANS.register("move_match")
def _move_match(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, word, hit, dst = (task.params[k] for k in ("dir", "word", "hit", "dst"))
    move = f"mv {path(rng, hit)} {path(rng, dst, True)}"
    make = mkdir(rng, dst, task.params["dst_exists"])
    out = [list_matches(rng, word, d), *steps(rng, make, move)]
    name = hit.rsplit("/", 1)[-1]
    final = rng.choice([f"Moved {hit} into {dst}.", f"{name} mentions {word}; it is now in {dst}."])
    return out, final


@PLANS.register("count_into_file")
def _count_into_file(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, out_path, rows = task.params["path"], task.params["out"], task.params["rows"]
    write = f"echo {rng.choice([str(rows), quote(rng, str(rows))])} > {path(rng, out_path)}"
    final = rng.choice(
        [f"{p} has {rows} lines; I wrote {rows} to {out_path}.", f"Saved {rows} in {out_path}."]
    )
    return [count_command(rng, p), write], final
