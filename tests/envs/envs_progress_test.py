"""Lenient acceptability (`progress=True`): other needed writes, in another order or at once."""

import json

from pivotrl_jax.envs import generate_sft
from pivotrl_jax.envs.progress import flatten, moves_toward
from pivotrl_jax.envs.terminal import acceptable as terminal_ok
from pivotrl_jax.envs.terminal import make_task as terminal_task
from pivotrl_jax.envs.tool_use import acceptable as tool_ok
from pivotrl_jax.envs.tool_use import make_task as tool_task
from pivotrl_jax.envs.tool_use.tools import WRITES
from pivotrl_jax.rewards import build_verifier
from pivotrl_jax.rewards.actions import parse_action
from pivotrl_jax.rewards.base import VerifyState


def _calls(*calls) -> dict:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for k, (n, a) in enumerate(calls)
        ],
    }


def _cmd(command: str) -> dict:
    return _calls(("run_command", {"command": command}))


def test_moves_toward_hand_worked():
    before = flatten({"o": {"O1": "pending", "O2": "pending"}, "addr": {"city": "x"}})
    goal = flatten({"o": {"O1": "cancelled", "O2": "cancelled"}, "addr": {"city": "x"}})
    one = flatten({"o": {"O1": "cancelled", "O2": "pending"}, "addr": {"city": "x"}})
    wrong = flatten({"o": {"O1": "cancelled", "O2": "pending"}, "addr": {"city": "y"}})
    assert moves_toward(before, one, goal) and moves_toward(before, goal, goal)
    assert not moves_toward(before, wrong, goal) and not moves_toward(before, before, goal)
    assert moves_toward({("f", "a"): "x"}, {}, {})  # a deletion the goal wants
    assert not moves_toward({("f", "a"): "x"}, {}, {("f", "a"): "x"})


def _first_write_state(kind: str, name: str, sequential: bool):
    for traj in generate_sft("tool_use", 400, seed=21):
        if traj["metadata"]["kind"] != kind:
            continue
        msgs = traj["messages"]
        k, m = next((k, m) for k, m in enumerate(msgs) if m.get("tool_calls") and _writes(m))
        calls = m["tool_calls"]
        if calls[0]["function"]["name"] == name and (len(calls) == 1) == sequential:
            return tool_task(traj["metadata"]["session"]), msgs[:k], m
    raise AssertionError(kind)


def _writes(message: dict) -> bool:
    return message["tool_calls"][0]["function"]["name"] in WRITES


def test_other_pending_orders_in_any_order_or_at_once():
    task, history, expected = _first_write_state("cancel_pending", "cancel_order", True)
    first = json.loads(expected["tool_calls"][0]["function"]["arguments"])["order_id"]
    other = next(o for o in task.params["pending"] if o != first)
    swap = _calls(("cancel_order", {"order_id": other, "reason": "not needed"}))
    both = _calls(
        *[("cancel_order", {"order_id": o, "reason": "x"}) for o in task.params["pending"]]
    )
    assert not tool_ok(history, expected, swap) and tool_ok(history, expected, swap, progress=True)
    assert not tool_ok(history, expected, both) and tool_ok(history, expected, both, progress=True)
    for oid in task.world["orders"]:  # other customers' orders, or this one's shipped ones
        if oid not in task.params["pending"]:
            bad = _calls(("cancel_order", {"order_id": oid, "reason": "x"}))
            assert not tool_ok(history, expected, bad, progress=True)


def test_writes_are_not_progress_where_the_expert_reads_or_asks():
    task, history, _ = _first_write_state("cancel_pending", "cancel_order", True)
    write = _calls(("cancel_order", {"order_id": task.params["pending"][0], "reason": "x"}))
    lookup = next(m for m in reversed(history) if m.get("tool_calls"))  # the last lookup
    k = history.index(lookup)
    assert not tool_ok(history[:k], lookup, write, progress=True)


def test_cancel_and_move_either_write_first():
    task, history, expected = _first_write_state("cancel_and_move", "cancel_order", True)
    p = task.params
    move = _calls(
        (
            "update_address",
            {"city": p["city"], "street": p["street"], "customer_id": p["customer_id"]},
        )
    )
    elsewhere = _calls(
        (
            "update_address",
            {"city": "nowhere", "street": p["street"], "customer_id": p["customer_id"]},
        )
    )
    assert not tool_ok(history, expected, move)
    assert tool_ok(history, expected, move, progress=True)
    assert not tool_ok(history, expected, elsewhere, progress=True)


def _terminal_state(kind: str, prefix: str):
    for traj in generate_sft("terminal", 400, seed=22):
        if traj["metadata"]["kind"] != kind:
            continue
        msgs = traj["messages"]
        for k, m in enumerate(msgs):
            if m.get("tool_calls"):
                cmd = json.loads(m["tool_calls"][0]["function"]["arguments"])["command"]
                if cmd.startswith(prefix):
                    return terminal_task(traj["metadata"]["session"]), msgs[:k], m, cmd
    raise AssertionError(kind)


def test_terminal_progress_accepts_part_of_the_needed_deletions_only():
    """Expected: one `find -delete` of every .tmp file; deleting one of them is progress."""
    task, history, expected, _ = _terminal_state("clean_tmp", "find ")
    doomed = task.params["doomed"]
    keep = next(p[len("/home/user/") :] for p in task.initial.files if p.endswith(".txt"))
    assert not terminal_ok(history, expected, _cmd(f"rm {doomed[0]}"))
    assert terminal_ok(history, expected, _cmd(f"rm {doomed[0]}"), progress=True)
    assert terminal_ok(history, expected, _cmd(f"rm {' '.join(doomed)}"))
    assert not terminal_ok(history, expected, _cmd(f"rm {keep}"), progress=True)
    assert not terminal_ok(history, expected, _cmd(f"rm {doomed[0]} {keep}"), progress=True)
    assert not terminal_ok(history, expected, _cmd(f"ls {task.params['dir']}"), progress=True)


def test_verifier_passes_progress_through():
    task, history, expected, _ = _terminal_state("clean_tmp", "find ")
    state = VerifyState(messages=tuple(history), env="terminal")
    one = parse_action(_cmd(f"rm {task.params['doomed'][0]}"))
    strict = build_verifier("env_acceptable", domain="terminal")
    lenient = build_verifier("env_acceptable", domain="terminal", progress=True)
    exp = parse_action(expected)
    assert strict.verify(state, exp, one).reward == 0.0
    assert lenient.verify(state, exp, one).reward == 1.0
