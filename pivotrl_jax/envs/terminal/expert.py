"""The terminal expert: a plan of commands per task kind, drawn with variation.

Variation covers what a functional verifier should accept: path spellings (`logs`, `./logs`,
`~/logs`, `/home/user/logs`), flag spellings (`-r`/`-R`, `mkdir`/`mkdir -p`), quoting, globs
versus explicit file lists, `cd` first versus full paths, chains with `&&`, different commands
with the same effect (`find -delete` vs `rm`, `cp -r` vs `mkdir` + `cp`), and optional look and
check steps. Plans are computed from the task (ground truth), then replayed as a policy.
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


def home(rng: random.Random, d: str) -> str:
    """A command returning from home-relative directory `d` to the home directory."""
    up = "/".join([".."] * (d.count("/") + 1))
    return rng.choice(["cd", "cd ~", f"cd {HOME}", f"cd {up}"])


def maybe(rng: random.Random, p: float, *commands: str) -> list[str]:
    return list(commands) if rng.random() < p else []


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
    src, dst, ext, moved = (task.params[k] for k in ("src", "dst", "ext", "moved"))
    look = rng.choice(
        [f"ls {path(rng, src, True)}", f"find {path(rng, src)} -name {quote(rng, '*' + ext)}"]
    )
    out = maybe(rng, 0.7, look)
    mkdir = f"{rng.choice(['mkdir', 'mkdir -p'])} {path(rng, dst)}"
    if task.params["dst_exists"]:
        mkdir = f"mkdir -p {path(rng, dst)}" if rng.random() < 0.2 else ""
    glob_mv = f"mv {path(rng, src)}/*{ext} {path(rng, dst, True)}"
    variant = rng.choice(["glob", "list", "each", "cd", "chain"])
    if variant == "chain" and mkdir:
        out.append(f"{mkdir} && {glob_mv}")
    else:
        out += [mkdir] if mkdir else []
        if variant == "list":
            out.append(
                f"mv {' '.join(path(rng, f'{src}/{n}') for n in moved)} {path(rng, dst, True)}"
            )
        elif variant == "each":
            out += [f"mv {path(rng, f'{src}/{n}')} {path(rng, dst, True)}" for n in moved]
        elif variant == "cd":
            out += [f"cd {path(rng, src)}", f"mv *{ext} {rng.choice(['../', '~/'])}{dst}/"]
            out.append(home(rng, src))
        else:
            out.append(glob_mv)
    out += maybe(rng, 0.4, f"ls {path(rng, dst)}")
    final = rng.choice(
        [
            f"Done. I moved {len(moved)} {ext} files from {src} to {dst}.",
            f"All {ext} files from {src} are now in {dst}.",
            f"Moved {', '.join(moved)} into {dst}.",
        ]
    )
    return out, final


@PLANS.register("make_file")
def _make_file(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, name, content = task.params["dir"], task.params["name"], task.params["content"]
    flag = "-p " if not task.params["flat"] or rng.random() < 0.5 else ""
    mkdir = f"mkdir {flag}{path(rng, d)}"
    write = f"echo {quote(rng, content)} > {path(rng, f'{d}/{name}')}"
    variant = rng.choice(["two", "chain", "cd", "touch"])
    if variant == "chain":
        out = [f"{mkdir} && {write}"]
    elif variant == "cd":
        out = [mkdir, f"cd {path(rng, d)}", f"echo {quote(rng, content)} > {name}", home(rng, d)]
    elif variant == "touch":
        out = [mkdir, f"touch {path(rng, f'{d}/{name}')}", write]
    else:
        out = [mkdir, write]
    out += maybe(rng, 0.4, f"cat {path(rng, f'{d}/{name}')}")
    final = rng.choice(
        [
            f"Created {d}/{name} with the requested line.",
            f"Done: {d}/{name} now contains '{content}'.",
        ]
    )
    return out, final


@PLANS.register("clean_tmp")
def _clean_tmp(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, sub, doomed = task.params["dir"], task.params["sub"], task.params["doomed"]
    find = f"find {path(rng, d)} -name {quote(rng, '*.tmp')}"
    out = maybe(rng, 0.7, rng.choice([find, f"ls {path(rng, d)} {path(rng, f'{d}/{sub}')}"]))
    rm = rng.choice(["rm", "rm -f"])
    variant = rng.choice(["delete", "globs", "list", "each"])
    if variant == "delete":
        out.append(f"{find} -delete")
    elif variant == "globs":
        out.append(f"{rm} {path(rng, d)}/*.tmp {path(rng, f'{d}/{sub}')}/*.tmp")
    elif variant == "list":
        out.append(f"{rm} {' '.join(path(rng, p) for p in doomed)}")
    else:
        out += [f"{rm} {path(rng, p)}" for p in doomed]
    out += maybe(rng, 0.4, find)
    final = rng.choice(
        [f"Deleted {len(doomed)} .tmp files under {d}.", f"All .tmp files in {d} are gone now."]
    )
    return out, final


@PLANS.register("backup_dir")
def _backup(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    src, dst = task.params["src"], task.params["dst"]
    out = maybe(rng, 0.5, f"ls {path(rng, src)}")
    out += rng.choice(
        [
            [f"cp -r {path(rng, src)} {path(rng, dst)}"],
            [f"cp -R {path(rng, src, True)} {path(rng, dst)}"],
            [f"mkdir {path(rng, dst)}", f"cp {path(rng, src)}/* {path(rng, dst, True)}"],
        ]
    )
    out += maybe(rng, 0.4, f"ls {path(rng, dst)}")
    final = rng.choice([f"Copied {src} to {dst}.", f"The backup is in {dst}."])
    return out, final


@PLANS.register("rename_file")
def _rename(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, old, new = task.params["dir"], task.params["old"], task.params["new"]
    out = maybe(rng, 0.5, f"ls {path(rng, d)}")
    out += rng.choice(
        [
            [f"mv {path(rng, f'{d}/{old}')} {path(rng, f'{d}/{new}')}"],
            [f"cd {path(rng, d)}", f"mv {old} {new}", home(rng, d)],
            [
                f"cp {path(rng, f'{d}/{old}')} {path(rng, f'{d}/{new}')}",
                f"rm {path(rng, f'{d}/{old}')}",
            ],
        ]
    )
    final = rng.choice([f"Renamed {old} to {new} in {d}.", f"{d}/{old} is now called {new}."])
    return out, final


@PLANS.register("append_line")
def _append(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, new = task.params["path"], task.params["line"]
    out = maybe(rng, 0.5, f"cat {path(rng, p)}")
    out.append(f"echo {quote(rng, new)} >> {path(rng, p)}")
    out += maybe(rng, 0.4, rng.choice([f"tail -n 1 {path(rng, p)}", f"cat {path(rng, p)}"]))
    final = rng.choice([f"Added '{new}' at the end of {p}.", f"{p} now ends with {new}."])
    return out, final


@PLANS.register("find_word")
def _find_word(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, word, hit = task.params["dir"], task.params["word"], task.params["hit"]
    flags = rng.choice(["-r", "-R", "-rl", "-rn", "-ri", "-ril"])
    out = maybe(rng, 0.3, f"ls {path(rng, d)}")
    out.append(f"grep {flags} {quote(rng, word)} {path(rng, d, True)}")
    name = hit.rsplit("/", 1)[-1]
    final = rng.choice(
        [f"The word {word} is in {hit}.", f"It is {name}.", f"{hit} mentions {word}."]
    )
    return out, final


@PLANS.register("count_lines")
def _count_lines(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, rows = task.params["path"], task.params["rows"]
    q, empty = path(rng, p), rng.choice(['""', "''"])
    out = maybe(rng, 0.4, f"ls {path(rng, p.rsplit('/', 1)[0])}")
    out += [
        rng.choice(
            [
                f"wc -l {q}",
                f"cat {q}",
                f"grep -c {empty} {q}",
                f"cat {q} | wc -l",
            ]
        )
    ]
    final = rng.choice(
        [f"{p} has {rows} lines.", f"There are {rows} lines in {p}.", f"{rows} lines."]
    )
    return out, final


@PLANS.register("count_matches")
def _count_matches(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, word, count = task.params["path"], task.params["word"], task.params["count"]
    q, w = path(rng, p), quote(rng, word)
    out = maybe(rng, 0.4, f"ls {path(rng, p.rsplit('/', 1)[0])}")
    out += [
        rng.choice(
            [f"grep -c {w} {q}", f"grep {w} {q} | wc -l", f"grep {w} {q}", f"grep -n {w} {q}"]
        )
    ]
    final = rng.choice(
        [f"{count} lines contain {word}.", f"The word {word} appears on {count} lines of {p}."]
    )
    return out, final


@PLANS.register("move_match")
def _move_match(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    d, word, hit, dst = (task.params[k] for k in ("dir", "word", "hit", "dst"))
    flags = rng.choice(["-rl", "-r", "-rn", "-ril", "-Rl"])
    out = [f"grep {flags} {quote(rng, word)} {path(rng, d, True)}"]
    mkdir = f"{rng.choice(['mkdir', 'mkdir -p'])} {path(rng, dst)}"
    move = f"mv {path(rng, hit)} {path(rng, dst, True)}"
    if task.params["dst_exists"]:
        out.append(move)
    else:
        out += rng.choice([[mkdir, move], [f"{mkdir} && {move}"]])
    out += maybe(rng, 0.4, f"ls {path(rng, dst)}")
    name = hit.rsplit("/", 1)[-1]
    final = rng.choice([f"Moved {hit} into {dst}.", f"{name} mentions {word}; it is now in {dst}."])
    return out, final


@PLANS.register("count_into_file")
def _count_into_file(task: TerminalTask, rng: random.Random) -> tuple[list[str], str]:
    p, out_path, rows = task.params["path"], task.params["out"], task.params["rows"]
    q, empty = path(rng, p), rng.choice(['""', "''"])
    look = rng.choice([f"wc -l {q}", f"cat {q}", f"cat {q} | wc -l", f"grep -c {empty} {q}"])
    write = f"echo {rng.choice([str(rows), quote(rng, str(rows))])} > {path(rng, out_path)}"
    out = [look, write, *maybe(rng, 0.4, f"cat {path(rng, out_path)}")]
    final = rng.choice(
        [f"{p} has {rows} lines; I wrote {rows} to {out_path}.", f"Saved {rows} in {out_path}."]
    )
    return out, final
