"""The tool-use expert: look the customer up, list the orders, confirm, change, answer.

Every step is one the state determines (the request, the user's replies and the tool results
seen so far), so a policy that reads only the prompt can match it (see `envs/oracle.py`).
Variation covers the acceptable alternatives at each state: `find_customer` by email, by name
or by both, in either key order; argument order of writes; several writes in one parallel turn
or one per turn, in any order; paraphrased reasons (free text); paraphrased messages, which
always state the task's facts (the order asked about, the new address, the answer).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pivotrl_jax.envs.base import Message, Policy
from pivotrl_jax.envs.messages import assistant_calls, assistant_text, scripted
from pivotrl_jax.envs.sessions import expert_rng
from pivotrl_jax.envs.tool_use.tasks import DOMAIN, ToolUseTask
from pivotrl_jax.registry import Registry

Calls = list[tuple[str, dict]]
Step = Calls | str  # tool calls of one turn, or a message
PLANS: Registry[Callable[[ToolUseTask, random.Random], list[Step]]] = Registry("tool-use plan")

REASON_ARGS = {
    "I ordered it by mistake": ("ordered by mistake", "customer ordered it by mistake"),
    "I no longer need it": ("no longer needed", "customer no longer needs it"),
    "I found it cheaper elsewhere": ("found it cheaper elsewhere", "cheaper elsewhere"),
    "it arrived damaged": ("arrived damaged", "item arrived damaged"),
    "it stopped working": ("stopped working", "item stopped working"),
    "it is not what I expected": ("not as expected", "item not what the customer expected"),
}


def shuffled(rng: random.Random, args: dict) -> dict:
    """The same arguments in a random key order."""
    keys = list(args)
    rng.shuffle(keys)
    return {k: args[k] for k in keys}


def find(task: ToolUseTask, rng: random.Random) -> Calls:
    customer = task.world["customers"][task.params["customer_id"]]
    given = task.params["given"]
    keys = rng.choice([[k] for k in given] + ([list(given)] if len(given) > 1 else []))
    return [("find_customer", shuffled(rng, {k: customer[k] for k in keys}))]


def orders(task: ToolUseTask) -> list[Step]:
    """The turn that reveals the customer's orders."""
    return [[("list_orders", {"customer_id": task.params["customer_id"]})]]


def reason_arg(task: ToolUseTask, rng: random.Random) -> str:
    return rng.choice(REASON_ARGS[task.params["reason"]])


def expert(task: ToolUseTask, seed: int) -> Policy:
    rng = expert_rng(DOMAIN, task.session, seed)
    steps: list[Message] = [
        assistant_text(s) if isinstance(s, str) else assistant_calls(s, k)
        for k, s in enumerate(PLANS.get(task.kind)(task, rng))
    ]
    return scripted(steps)


def _order(task: ToolUseTask) -> dict:
    return task.world["orders"][task.params["order_id"]]


# ---------------------------------------------------------------------------------------------


@PLANS.register("order_status")
def _status(task: ToolUseTask, rng: random.Random) -> list[Step]:
    o = _order(task)
    oid, product, status = o["order_id"], task.params["product"], o["status"]
    final = rng.choice(
        [
            f"Your {product} order {oid} is {status}.",
            f"Order {oid} with the {product} is {status}.",
            f"The {product} order is {status}.",
        ]
    )
    return [find(task, rng), *orders(task), final]


@PLANS.register("total_spent")
def _total(task: ToolUseTask, rng: random.Random) -> list[Step]:
    total = task.params["total"]
    n = len(task.world["customers"][task.params["customer_id"]]["order_ids"])
    final = rng.choice(
        [
            f"Your orders add up to {total} dollars.",
            f"You have spent {total} dollars in total.",
            f"The total of your {n} orders is {total} dollars.",
        ]
    )
    return [find(task, rng), *orders(task), final]


@PLANS.register("cancel_order")
def _cancel(task: ToolUseTask, rng: random.Random) -> list[Step]:
    o = _order(task)
    oid, product = o["order_id"], task.params["product"]
    ask = rng.choice(
        [
            f"I found order {oid} with the {product} for {o['total']} dollars. It is still "
            "pending. Shall I cancel it?",
            f"Order {oid} ({product}) is pending and can be cancelled. Should I cancel it?",
        ]
    )
    cancel = ("cancel_order", shuffled(rng, {"order_id": oid, "reason": reason_arg(task, rng)}))
    final = rng.choice(
        [f"Order {oid} is cancelled.", f"Done. Your {product} order {oid} has been cancelled."]
    )
    return [find(task, rng), *orders(task), ask, [cancel], final]


@PLANS.register("refund_order")
def _refund(task: ToolUseTask, rng: random.Random) -> list[Step]:
    o = _order(task)
    oid, product, total = o["order_id"], task.params["product"], o["total"]
    ask = rng.choice(
        [
            f"Order {oid} with the {product} was delivered. I can refund {total} dollars. "
            "Shall I go ahead?",
            f"I see the {product} in order {oid}. Do you want a refund of {total} dollars?",
        ]
    )
    refund = ("refund_order", shuffled(rng, {"order_id": oid, "reason": reason_arg(task, rng)}))
    final = rng.choice(
        [
            f"The refund of {total} dollars for order {oid} is done.",
            f"Order {oid} has been refunded.",
        ]
    )
    return [find(task, rng), *orders(task), ask, [refund], final]


def _move_call(task: ToolUseTask, rng: random.Random) -> tuple[str, dict]:
    p = task.params
    args = {"customer_id": p["customer_id"], "street": p["street"], "city": p["city"]}
    return "update_address", shuffled(rng, args)


@PLANS.register("update_address")
def _move(task: ToolUseTask, rng: random.Random) -> list[Step]:
    street, city = task.params["street"], task.params["city"]
    ask = rng.choice(
        [
            f"I will change your address to {street}, {city}. Is that correct?",
            f"Just to confirm: your new address is {street}, {city}?",
        ]
    )
    final = rng.choice(
        [f"Your address is now {street}, {city}.", f"Done, your address is now {street}, {city}."]
    )
    return [find(task, rng), ask, [_move_call(task, rng)], final]


@PLANS.register("cancel_and_move")
def _cancel_and_move(task: ToolUseTask, rng: random.Random) -> list[Step]:
    o = _order(task)
    oid, product = o["order_id"], task.params["product"]
    street, city = task.params["street"], task.params["city"]
    ask = (
        f"I will cancel order {oid} ({product}) and change your address to {street}, {city}. "
        + rng.choice(["Shall I proceed?", "Is that all right?"])
    )
    cancel = ("cancel_order", shuffled(rng, {"order_id": oid, "reason": reason_arg(task, rng)}))
    writes = [cancel, _move_call(task, rng)]
    rng.shuffle(writes)
    changes: list[Step] = [writes] if rng.random() < 0.5 else [[w] for w in writes]
    final = rng.choice(
        [
            f"Order {oid} is cancelled and your address is updated.",
            f"Both changes are done: order {oid} is cancelled.",
        ]
    )
    return [find(task, rng), *orders(task), ask, *changes, final]


@PLANS.register("cancel_pending")
def _cancel_pending(task: ToolUseTask, rng: random.Random) -> list[Step]:
    pending = list(task.params["pending"])
    orders_by_id = task.world["orders"]
    listing = ", ".join(f"{o} ({orders_by_id[o]['items'][0]})" for o in pending)
    ask = rng.choice(
        [
            f"You have {len(pending)} pending orders: {listing}. Shall I cancel them all?",
            f"These orders are still pending: {listing}. Do you want me to cancel all of them?",
        ]
    )
    rng.shuffle(pending)
    cancels = [
        ("cancel_order", shuffled(rng, {"order_id": o, "reason": reason_arg(task, rng)}))
        for o in pending
    ]
    changes: list[Step] = [cancels] if rng.random() < 0.5 else [[c] for c in cancels]
    final = rng.choice(
        [
            f"All {len(pending)} pending orders ({', '.join(sorted(pending))}) are cancelled.",
            f"Done. I cancelled {', '.join(sorted(pending))}.",
        ]
    )
    return [find(task, rng), *orders(task), ask, *changes, final]
