"""A state-only oracle and a shuffled-action control: is the reward a function of the state?

A turn-level reward is well posed when the prompt alone determines which actions earn it. Two
measurements over the candidate turns of a domain's expert trajectories say whether it is:

- **oracle**: a scripted solver that reads only the prompt (the request, the user's replies,
  the tool results; never the session number, the task record or the expert's plan) acts at each
  turn, and the domain's functional verifier scores its action against the demonstrated one.
  Near 1 means every demonstrated action is the consequence of what the prompt shows.
- **control**: the demonstrated action of another, randomly drawn trajectory's turn of the same
  domain is scored at each turn instead. Near 0 means the verifier does not hand out reward to
  actions unrelated to the state.

    measure("terminal", generate_sft("terminal", 200, seed=0))
    -> {"oracle": 1.0, "control": 0.01, "turns": 640, ...}

The solvers parse requests with the domains' own phrasing templates (`INSTRUCTIONS`, `ASKS`,
`IDENTITIES`), as a reader who knows the language would.
"""

from __future__ import annotations

import json
import posixpath
import random
import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from pivotrl_jax.envs.base import Message
from pivotrl_jax.envs.domains import verifier_spec
from pivotrl_jax.envs.messages import assistant_calls, assistant_text
from pivotrl_jax.registry import Registry
from pivotrl_jax.rewards.actions import parse_action
from pivotrl_jax.rewards.base import VerifyState, build_verifier
from pivotrl_jax.rewards.runner import run_verifier

Oracle = Callable[[list[Message]], Message]
ORACLES: Registry[Oracle] = Registry("oracle")


def template_regex(template: str) -> re.Pattern:
    """`str.format` template -> a regex whose named groups capture its fields (a field used twice
    must repeat its value)."""
    out, seen, pos = [], set(), 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        name = m.group(1)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def parse(text: str, templates: dict[str, Sequence[str]]) -> tuple[str, dict[str, str]] | None:
    """(key, fields) of the first template that matches all of `text`."""
    for key, options in templates.items():
        for template in options:
            m = template_regex(template).fullmatch(text)
            if m:
                return key, m.groupdict()
    return None


def _calls(messages: list[Message]) -> list[tuple[str, dict[str, Any], str]]:
    """(tool name, arguments, result text) of every call in the history, in order; a call's
    result is the tool message after it that names its id (else the next one in order)."""
    out = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m.get("tool_calls"):
            continue
        replies = []
        for r in messages[i + 1 :]:
            if r["role"] != "tool":
                break
            replies.append(r)
        by_id = {r.get("tool_call_id"): r.get("content") or "" for r in replies}
        for k, c in enumerate(m["tool_calls"]):
            fn = c["function"]
            args = fn["arguments"]
            args = json.loads(args) if isinstance(args, str) else dict(args)
            fallback = replies[k].get("content") or "" if k < len(replies) else ""
            out.append((fn["name"], args, by_id.get(c.get("id"), fallback)))
    return out


def _users(messages: list[Message]) -> list[str]:
    return [m.get("content") or "" for m in messages if m["role"] == "user"]


# ---------------------------------------------------------------------------------------------
# Terminal


def _turn(messages: list[Message]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def _cmd(line: str, messages: list[Message]) -> Message:
    return assistant_calls([("run_command", {"command": line})], _turn(messages))


def _ran(commands: list[str], program: str) -> bool:
    return any(re.search(rf"(^|[;&|]\s*){program}\s", c) for c in commands)


def _number(text: str) -> str | None:
    m = re.search(r"\d+", text)
    return m.group(0) if m else None


@ORACLES.register("terminal")
def terminal_oracle(messages: list[Message]) -> Message:
    from pivotrl_jax.envs.terminal.kinds import INSTRUCTIONS

    parsed = parse(_users(messages)[0], INSTRUCTIONS)
    if parsed is None:
        return assistant_text("I do not understand the request.")
    kind, f = parsed
    done = [(a.get("command", ""), out) for _, a, out in _calls(messages)]
    commands = [c for c, _ in done]
    last = done[-1][1] if done else ""
    wrote = any(">" in c for c in commands)
    if kind == "archive_files":
        if not _ran(commands, "mv"):
            return _cmd(f"mkdir -p {f['dst']} && mv {f['src']}/*{f['ext']} {f['dst']}/", messages)
        return assistant_text(f"Moved the {f['ext']} files from {f['src']} into {f['dst']}.")
    if kind == "make_file":
        target = f"{f['dir']}/{f['name']}"
        if not wrote:
            folder = posixpath.dirname(target)
            return _cmd(f"mkdir -p {folder} && echo '{f['content']}' > {target}", messages)
        return assistant_text(f"Created {target}.")
    if kind == "clean_tmp":
        if not _ran(commands, "find"):
            return _cmd(f"find {f['dir']} -name '*.tmp' -delete", messages)
        return assistant_text(f"Deleted the .tmp files in {f['dir']}.")
    if kind == "backup_dir":
        if _ran(commands, "cp"):
            return assistant_text(f"Copied {f['src']} to {f['dst']}.")
        if _ran(commands, "mkdir"):
            return _cmd(f"cp {f['src']}/* {f['dst']}/", messages)
        return _cmd(f"cp -r {f['src']} {f['dst']}", messages)
    if kind == "rename_file":
        if _ran(commands, "mv") or _ran(commands, "rm"):
            return assistant_text(f"Renamed {f['old']} to {f['new']}.")
        if _ran(commands, "cp"):
            return _cmd(f"rm {f['dir']}/{f['old']}", messages)
        return _cmd(f"mv {f['dir']}/{f['old']} {f['dir']}/{f['new']}", messages)
    if kind == "append_line":
        if not wrote:
            return _cmd(f"echo '{f['line']}' >> {f['path']}", messages)
        return assistant_text(f"Added {f['line']} to {f['path']}.")
    if kind in ("find_word", "move_match"):
        if not _ran(commands, "grep"):
            return _cmd(f"grep -rl {f['word']} {f['dir']}", messages)
        hit = next((c_out.split()[0] for c, c_out in done if "grep" in c and c_out.split()), "")
        if kind == "find_word":
            return assistant_text(f"It is {hit}.")
        if not _ran(commands, "mv"):
            return _cmd(f"mkdir -p {f['dst']} && mv {hit} {f['dst']}/", messages)
        return assistant_text(f"Moved {hit} into {f['dst']}.")
    if kind == "count_lines":
        if not done:
            return _cmd(f"wc -l {f['path']}", messages)
        return assistant_text(f"{f['path']} has {_number(last)} lines.")
    if kind == "count_matches":
        if not done:
            return _cmd(f"grep -c {f['word']} {f['path']}", messages)
        return assistant_text(f"{_number(last)} lines contain {f['word']}.")
    if kind == "count_into_file":
        if not done:
            return _cmd(f"wc -l {f['path']}", messages)
        n = _number(done[0][1])
        if not wrote:
            return _cmd(f"echo {n} > {f['out']}", messages)
        return assistant_text(f"Saved {n} in {f['out']}.")
    raise KeyError(f"terminal oracle: no plan for kind {kind!r}")


# ---------------------------------------------------------------------------------------------
# Tool use


@cache
def _tool_use_requests() -> dict[str, tuple[str, ...]]:
    """Every full first user turn: greeting + identity + request, keyed "kind|identity index"."""
    from pivotrl_jax.envs.tool_use.tasks import ASKS, GREETINGS, IDENTITIES

    out: dict[str, tuple[str, ...]] = {}
    for kind, asks in ASKS.items():
        for i, (who, _) in enumerate(IDENTITIES):
            out[f"{kind}|{i}"] = tuple(f"{g}{who} {a}" for g in GREETINGS for a in asks)
    return out


def _calls_message(calls: list[tuple[str, dict[str, Any]]], messages: list[Message]) -> Message:
    return assistant_calls(calls, _turn(messages))


@ORACLES.register("tool_use")
def tool_use_oracle(messages: list[Message]) -> Message:
    from pivotrl_jax.envs.tool_use.tasks import IDENTITIES

    users = _users(messages)
    parsed = parse(users[0], _tool_use_requests())
    if parsed is None:
        return assistant_text("Sorry, I did not understand.")
    key, f = parsed
    kind, who = key.split("|")
    reason = (f.get("reason") or f.get("Reason") or "customer request").lower()
    history = _calls(messages)
    results = {name: json.loads(out) for name, _, out in history if out.startswith("{")}
    if "find_customer" not in results:
        given = {k: f[k] for k in IDENTITIES[int(who)][1]}
        return _calls_message([("find_customer", given)], messages)
    cid = results["find_customer"]["customer_id"]
    if kind != "update_address" and "list_orders" not in results:
        return _calls_message([("list_orders", {"customer_id": cid})], messages)
    orders = results.get("list_orders", {}).get("orders", [])
    confirmed = len(users) >= 2
    done = {(n, a.get("order_id") or a.get("customer_id")) for n, a, out in history}

    def order_for(product: str, status: str) -> dict:
        hits = [o for o in orders if product in o["items"]]
        return next((o for o in hits if o["status"] == status), hits[0] if hits else {})

    if kind == "order_status":
        o = order_for(f["product"], "")
        return assistant_text(f"Your {f['product']} order {o['order_id']} is {o['status']}.")
    if kind == "total_spent":
        total = sum(o["total"] for o in orders)
        return assistant_text(f"You have spent {total} dollars in total.")
    writes: list[tuple[str, dict[str, Any]]] = []
    if kind in ("cancel_order", "refund_order", "cancel_and_move"):
        tool, status = (
            ("refund_order", "delivered")
            if kind == "refund_order"
            else (
                "cancel_order",
                "pending",
            )
        )
        oid = order_for(f["product"], status)["order_id"]
        question = f"Order {oid} ({f['product']}): shall I go ahead?"
        closing = f"Order {oid} is done."
        writes.append((tool, {"order_id": oid, "reason": reason}))
    if kind in ("update_address", "cancel_and_move"):
        address = {"customer_id": cid, "street": f["street"], "city": f["city"]}
        writes.append(("update_address", address))
        question = (question + " " if kind == "cancel_and_move" else "") + (
            f"Your new address is {f['street']}, {f['city']}. Is that right?"
        )
        closing = (closing + " " if kind == "cancel_and_move" else "") + (
            f"Your address is now {f['street']}, {f['city']}."
        )
    if kind == "cancel_pending":
        pending = [o["order_id"] for o in orders if o["status"] == "pending"]
        question = f"Your pending orders are {', '.join(pending)}. Shall I cancel them?"
        closing = f"Cancelled {', '.join(pending)}."
        writes = [("cancel_order", {"order_id": o, "reason": reason}) for o in pending]
    if not confirmed:
        return assistant_text(question)
    remaining = [
        (n, a) for n, a in writes if (n, a.get("order_id") or a.get("customer_id")) not in done
    ]
    return _calls_message(remaining, messages) if remaining else assistant_text(closing)


# ---------------------------------------------------------------------------------------------
# Measuring


def candidate_turns(trajectories: Sequence[dict]) -> list[tuple[list[Message], Message, int]]:
    """(history, demonstrated assistant message, trajectory index) of every assistant turn."""
    out = []
    for i, row in enumerate(trajectories):
        msgs = row["messages"]
        out += [(msgs[:k], m, i) for k, m in enumerate(msgs) if m["role"] == "assistant"]
    return out


def measure(domain: str, trajectories: Sequence[dict], seed: int = 0) -> dict[str, Any]:
    """Mean reward of the oracle's actions and of shuffled actions at every candidate turn of
    `trajectories` (one domain's expert trajectories), under the domain's functional verifier."""
    spec = verifier_spec(domain)
    verifier = build_verifier(spec.name, **dict(spec.params))
    oracle = ORACLES.get(domain)
    turns = candidate_turns(trajectories)
    rng = random.Random(f"control/{domain}/{seed}")
    tools = tuple(trajectories[0].get("tools") or []) if trajectories else ()

    def score(history: list[Message], expected: Message, action: Message) -> float:
        state = VerifyState(messages=tuple(history), tools=tools, env=domain)
        res = run_verifier(verifier, state, parse_action(expected), parse_action(action))
        return res.reward

    oracle_rewards, control_rewards, misses = [], [], {}
    for history, expected, i in turns:
        r = score(history, expected, oracle(history))
        oracle_rewards.append(r)
        if r < 1.0:
            key = _users(history)[0]
            misses.setdefault(key, 0)
            misses[key] += 1
        other = rng.choice(turns)
        while other[2] == i and len(trajectories) > 1:
            other = rng.choice(turns)
        control_rewards.append(score(history, expected, other[1]))
    n = max(len(turns), 1)
    return {
        "oracle": sum(oracle_rewards) / n,
        "control": sum(control_rewards) / n,
        "turns": len(turns),
        "trajectories": len(trajectories),
        "oracle_misses": sorted(misses.items(), key=lambda kv: -kv[1])[:5],
    }
