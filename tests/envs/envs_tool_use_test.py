"""Tool-use domain: tool semantics on a hand-built shop, experts, replay, acceptability."""

import json

from pivotrl_jax.envs import DOMAINS, generate_sft, generate_tasks, run_episode
from pivotrl_jax.envs.tool_use import ToolUseEnv, acceptable, execute, make_task, replay
from pivotrl_jax.envs.tool_use.tools import facts
from pivotrl_jax.envs.tool_use.world import functional
from pivotrl_jax.rewards import build_verifier
from pivotrl_jax.rewards.actions import parse_action
from pivotrl_jax.rewards.base import VerifyState

TRAJECTORIES = generate_sft("tool_use", 300, seed=5)


def _shop():
    return {
        "customers": {
            "C1": {
                "customer_id": "C1",
                "name": "Ana Lopez",
                "email": "ana.lopez@mail.com",
                "address": {"street": "1 oak street", "city": "fairview"},
                "order_ids": ["O1", "O2"],
            }
        },
        "orders": {
            "O1": {
                "order_id": "O1",
                "customer_id": "C1",
                "items": ["blue mug"],
                "total": 12,
                "status": "pending",
            },
            "O2": {
                "order_id": "O2",
                "customer_id": "C1",
                "items": ["yoga mat"],
                "total": 30,
                "status": "delivered",
            },
        },
        "products": {},
    }


def _calls(*calls) -> dict:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for k, (n, a) in enumerate(calls)
        ],
    }


def test_tools_hand_worked():
    db = _shop()
    ana = {"customer_id": "C1", "name": "Ana Lopez", "email": "ana.lopez@mail.com"}
    assert execute(db, "find_customer", {"email": "ANA.lopez@mail.com "}) == ana
    assert execute(db, "find_customer", {"name": "ana  lopez"}) == ana
    assert execute(db, "find_customer", {"name": "Ana Lopez", "email": "x@mail.com"}) == {
        "error": "customer not found"
    }
    assert execute(db, "find_customer", {}) == {"error": "give an email or a name"}
    assert execute(db, "get_order", {"order_id": "O3"}) == {"error": "order not found"}
    assert execute(db, "get_order", {"id": "O1"}) == {"error": "unexpected argument 'id'"}
    assert execute(db, "cancel_order", {"order_id": "O1"}) == {"error": "missing argument 'reason'"}
    assert execute(db, "delete_all", {}) == {"error": "unknown tool 'delete_all'"}
    assert execute(db, "cancel_order", {"order_id": "O2", "reason": "x"}) == {
        "error": "order is delivered; only pending orders can be cancelled"
    }
    assert execute(db, "refund_order", {"order_id": "o2", "reason": "broken"}) == {
        "order_id": "O2",
        "status": "refunded",
        "amount": 30,
    }
    assert execute(db, "cancel_order", {"reason": "mistake", "order_id": "O1"}) == {
        "order_id": "O1",
        "status": "cancelled",
    }
    execute(db, "update_address", {"customer_id": "C1", "street": " 9 elm road", "city": "Newport"})
    assert db["customers"]["C1"]["address"] == {"street": "9 elm road", "city": "Newport"}
    assert [o["status"] for o in db["orders"].values()] == ["cancelled", "refunded"]


def test_facts_make_list_orders_cover_get_order():
    db = _shop()
    listed = facts(execute(db, "list_orders", {"customer_id": "C1"}))
    one = facts(execute(db, "get_order", {"order_id": "O2"}))
    assert ("O2", "status", "delivered") in one and ("O2", "items", ("yoga mat",)) in one
    assert one <= listed and not listed <= one


def test_functional_state_ignores_notes_case_and_spacing():
    a, b = _shop(), _shop()
    execute(a, "cancel_order", {"order_id": "O1", "reason": "ordered by mistake"})
    execute(b, "cancel_order", {"order_id": "O1", "reason": "customer no longer needs it"})
    assert functional(a) == functional(b)
    execute(
        b, "update_address", {"customer_id": "C1", "street": "1 Oak  Street", "city": "FAIRVIEW"}
    )
    assert functional(a) == functional(b)
    execute(
        b, "update_address", {"customer_id": "C1", "street": "2 oak street", "city": "fairview"}
    )
    assert functional(a) != functional(b)


def test_every_expert_trajectory_replays_to_success():
    kinds = set()
    for traj in TRAJECTORIES:
        task = make_task(traj["metadata"]["session"])
        steps = [m for m in traj["messages"] if m["role"] == "assistant"]
        result = run_episode(
            task, lambda msgs, tools, s=steps: s[sum(m["role"] == "assistant" for m in msgs)]
        )
        assert result.success and result.messages == traj["messages"], traj["id"]
        assert 2 <= sum(len(m.get("tool_calls") or []) for m in steps) <= 8
        kinds.add(task.kind)
    assert kinds == {
        "cancel_and_move",
        "cancel_order",
        "cancel_pending",
        "order_status",
        "refund_order",
        "total_spent",
        "update_address",
    }


def test_wrong_or_missing_work_fails():
    for task in generate_tasks("tool_use", 40, seed=2):
        assert not run_episode(task, lambda m, t: "Sorry, I cannot help.").success
    # cancelling the wrong order: the database differs from the goal
    task = next(t for t in generate_tasks("tool_use", 60, seed=2) if t.kind == "cancel_order")
    env = ToolUseEnv(task)
    others = [o for o in task.world["orders"].values() if o["order_id"] != task.params["order_id"]]
    env.db["orders"][others[0]["order_id"]]["status"] = "cancelled"
    env.db["orders"][task.params["order_id"]]["status"] = "cancelled"
    env.final_text = "Done."
    assert not env.success()


def test_replay_rebuilds_database_and_observations():
    for traj in TRAJECTORIES[:120]:
        task = make_task(traj["metadata"]["session"])
        live = ToolUseEnv(task)
        msgs = traj["messages"]
        for k, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            _, db, _ = replay(msgs[:k])
            assert db == live.db
            replies, _ = live.step(m)
            assert replies == msgs[k + 1 : k + 1 + len(replies)]


def _state(kind: str, first_tool: str):
    for traj in TRAJECTORIES:
        if traj["metadata"]["kind"] != kind:
            continue
        msgs = traj["messages"]
        for k, m in enumerate(msgs):
            if (
                m["role"] == "assistant"
                and m.get("tool_calls")
                and m["tool_calls"][0]["function"]["name"] == first_tool
            ):
                return make_task(traj["metadata"]["session"]), msgs[:k], m
    raise AssertionError(kind)


def test_equivalent_identifiers_and_lookups_are_acceptable():
    task, history, expected = _state("cancel_order", "find_customer")
    c = task.world["customers"][task.params["customer_id"]]
    assert acceptable(history, expected, _calls(("find_customer", {"email": c["email"]})))
    assert acceptable(history, expected, _calls(("find_customer", {"name": c["name"].lower()})))
    assert acceptable(
        history, expected, _calls(("find_customer", {"email": c["email"], "name": c["name"]}))
    )
    assert not acceptable(
        history, expected, _calls(("find_customer", {"email": "nobody@mail.com"}))
    )
    assert not acceptable(
        history, expected, _calls(("list_orders", {"customer_id": c["customer_id"]}))
    )


def test_list_orders_may_replace_get_order_but_not_the_reverse():
    for traj in TRAJECTORIES:
        task = make_task(traj["metadata"]["session"])
        if (
            task.kind != "cancel_order"
            or len(task.world["customers"][task.params["customer_id"]]["order_ids"]) < 2
        ):
            continue
        msgs = traj["messages"]
        history = msgs[:4]  # system, user, find_customer, its result
        assert history[2]["tool_calls"][0]["function"]["name"] == "find_customer"
        cid, oid = task.params["customer_id"], task.params["order_id"]
        listed = _calls(("list_orders", {"customer_id": cid}))
        got = _calls(("get_order", {"order_id": oid}))
        profile = _calls(("get_customer", {"customer_id": cid}))
        assert acceptable(history, got, listed)  # reveals a superset
        assert not acceptable(history, listed, got)  # misses the other orders
        assert not acceptable(history, listed, profile)  # ids only, no statuses
        assert not acceptable(
            history, got, _calls(("cancel_order", {"order_id": oid, "reason": "x"}))
        )
        return
    raise AssertionError("no cancel_order task with two orders")


def test_writes_with_other_reasons_or_argument_order_are_acceptable():
    task, history, expected = _state("cancel_order", "cancel_order")
    oid = task.params["order_id"]
    assert acceptable(
        history,
        expected,
        _calls(("cancel_order", {"reason": "the customer changed their mind", "order_id": oid})),
    )
    other = next(
        o
        for o in task.world["customers"][task.params["customer_id"]]["order_ids"] + ["O1"]
        if o != oid
    )
    assert not acceptable(
        history, expected, _calls(("cancel_order", {"order_id": other, "reason": "x"}))
    )
    assert not acceptable(history, expected, "Your order is cancelled.")


def test_closing_messages_must_carry_the_answer():
    for traj in TRAJECTORIES:
        if traj["metadata"]["kind"] != "order_status":
            continue
        msgs = traj["messages"]
        task = make_task(traj["metadata"]["session"])
        status = task.answer
        other = next(s for s in ("pending", "shipped", "delivered") if s != status)
        assert acceptable(msgs[:-1], msgs[-1], f"It is {status}.")
        assert not acceptable(msgs[:-1], msgs[-1], f"It is {other}.")
        return
    raise AssertionError("no order_status trajectory")


def test_confirmation_turn_needs_a_question_about_the_order_and_no_write():
    task, history, _ = _state("refund_order", "refund_order")
    ask_k = max(
        k for k, m in enumerate(history) if m["role"] == "assistant" and not m.get("tool_calls")
    )
    before, expected = history[:ask_k], history[ask_k]
    oid = task.params["order_id"]
    assert acceptable(before, expected, f"Shall I refund order {oid}?")
    assert acceptable(before, expected, f"Refund {oid.lower()}, right?")
    assert not acceptable(before, expected, "Shall I refund it?")
    refund = _calls(("refund_order", {"order_id": task.params["order_id"], "reason": "broken"}))
    assert not acceptable(before, expected, refund)


def test_tool_call_verifier_is_stricter_than_execution():
    """The reference verifier needs the same argument keys; execution (the domain's verifier)
    accepts email for name."""
    task, history, expected = _state("order_status", "find_customer")
    c = task.world["customers"][task.params["customer_id"]]
    verifier = build_verifier("tool_call", threshold=0.1)
    spec = DOMAINS.get("tool_use").verifier
    assert spec.name == "env_acceptable"
    state = VerifyState(messages=tuple(history), tools=tuple(ToolUseEnv(task).tools))
    keys = set(json.loads(expected["tool_calls"][0]["function"]["arguments"]))
    swapped = _calls(
        ("find_customer", {"email": c["email"]} if keys == {"name"} else {"name": c["name"]})
    )
    if keys != {"name", "email"}:
        assert verifier.verify(state, parse_action(expected), parse_action(swapped)).reward == 0.0
    assert acceptable(history, expected, swapped)
    assert verifier.verify(state, parse_action(expected), parse_action(expected)).reward == 1.0


def test_env_acceptable_verifier_wraps_the_domain_check():
    task, history, expected = _state("order_status", "find_customer")
    c = task.world["customers"][task.params["customer_id"]]
    verifier = build_verifier("env_acceptable", domain="tool_use")
    state = VerifyState(messages=tuple(history), env="tool_use")
    by_email = parse_action(_calls(("find_customer", {"email": c["email"]})))
    wrong = parse_action(_calls(("find_customer", {"email": "nobody@mail.com"})))
    assert verifier.verify(state, parse_action(expected), by_email).reward == 1.0
    assert verifier.verify(state, parse_action(expected), wrong).reward == 0.0
    assert (
        build_verifier("env_acceptable").verify(state, parse_action(expected), by_email).reward
        == 1.0
    )


def test_expert_tool_calls_never_fail():
    for traj in TRAJECTORIES:
        for m in traj["messages"]:
            if m["role"] == "tool":
                assert "error" not in json.loads(m["content"]), traj["id"]
