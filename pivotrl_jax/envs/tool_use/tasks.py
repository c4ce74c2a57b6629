"""Tool-use tasks: a shop world, a scripted user, the goal database and the answer, if any.

`make_task(session)` is deterministic. A kind (registered in `KINDS`) picks a customer, phrases
the request from seeded templates, lists the user's later replies (a confirmation before any
change), and computes the goal by editing a copy of the database directly, never through the
tools, so that the goal is an independent reference for the tools' semantics.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pivotrl_jax.envs.sessions import task_rng
from pivotrl_jax.envs.tool_use.world import CITIES, DB, STREETS, copy_db, functional, make_world
from pivotrl_jax.registry import Registry

DOMAIN = "tool_use"
CONFIRMATIONS = ("Yes, please go ahead.", "Yes, do it.", "Yes please.", "That's right, go ahead.")
CANCEL_REASONS = ("I ordered it by mistake", "I no longer need it", "I found it cheaper elsewhere")
REFUND_REASONS = ("it arrived damaged", "it stopped working", "it is not what I expected")


@dataclass(frozen=True)
class ToolUseTask:
    id: str
    session: int
    kind: str
    user_turns: tuple[str, ...]  # the request, then the scripted replies to assistant messages
    world: DB  # initial database; never changed (environments copy it)
    goal: Any  # functional(database) when the task is done
    answer: str | None  # text the final message must contain (questions)
    params: Mapping[str, Any] = field(default_factory=dict)
    ask_facts: tuple[str, ...] = ()  # what a confirmation question states (the order, address)
    report: tuple[str, ...] = ()  # what the closing message states (the answer, what changed)
    domain: str = DOMAIN

    @property
    def instruction(self) -> str:
        return self.user_turns[0]


@dataclass(frozen=True)
class KindDraw:
    user_turns: tuple[str, ...]
    goal: DB
    params: dict[str, Any]
    answer: str | None = None
    ask_facts: tuple[str, ...] = ()
    report: tuple[str, ...] = ()


KINDS: Registry[Callable[[random.Random, DB], KindDraw]] = Registry("tool-use task kind")


def make_task(session: int) -> ToolUseTask:
    rng = task_rng(DOMAIN, session)
    kind = rng.choice(KINDS.names())
    db = make_world(rng)
    draw = KINDS.get(kind)(rng, db)
    return ToolUseTask(
        id=f"{DOMAIN}-{session}",
        session=session,
        kind=kind,
        user_turns=draw.user_turns,
        world=db,
        goal=functional(draw.goal),
        answer=draw.answer,
        params=draw.params,
        ask_facts=draw.ask_facts,
        report=draw.report,
    )


# How users phrase things: `str.format` templates, data so that a solver reading only the prompt
# can parse a request (`envs/oracle.py`). `{Reason}` is the reason with a capital first letter.
IDENTITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("I'm {name}.", ("name",)),
    ("My email is {email}.", ("email",)),
    ("This is {name}, {email}.", ("name", "email")),
    ("I am {name} and my email is {email}.", ("name", "email")),
)
GREETINGS = ("", "Hi! ", "Hello. ")
ASKS: dict[str, tuple[str, ...]] = {
    "order_status": (
        "What is the status of my {product} order?",
        "Can you tell me where my order with the {product} is?",
        "Has my {product} order shipped yet?",
    ),
    "total_spent": (
        "How much have I spent on all my orders together?",
        "What is the total of all my orders?",
        "Can you add up the cost of my orders for me?",
    ),
    "cancel_order": (
        "Please cancel my order for the {product}, {reason}.",
        "I want to cancel the {product} order because {reason}.",
        "Could you cancel my {product} order? {Reason}.",
    ),
    "refund_order": (
        "I want a refund for the {product}, {reason}.",
        "My {product} order came but {reason}. Can I get my money back?",
        "Please refund my {product} order because {reason}.",
    ),
    "update_address": (
        "I moved. Please change my address to {street}, {city}.",
        "Can you update my address? The new one is {street} in {city}.",
        "My new address is {street}, {city}. Please update it.",
    ),
    "cancel_and_move": (
        "Two things: please cancel my {product} order, {reason}, and change my address "
        "to {street}, {city}.",
        "I moved to {street}, {city}, so please update my address. Also cancel the "
        "{product} order, {reason}.",
    ),
    "cancel_pending": (
        "Please cancel all my orders that have not shipped yet, {reason}.",
        "I want to cancel every pending order I have. {Reason}.",
    ),
}


def identify(rng: random.Random, customer: dict[str, Any]) -> tuple[str, list[str]]:
    """How the user introduces themself, and which identifiers that gives."""
    template, given = rng.choice(IDENTITIES)
    return template.format(name=customer["name"], email=customer["email"]), list(given)


def ask(rng: random.Random, kind: str, **fields: str) -> str:
    if "reason" in fields:
        fields["Reason"] = fields["reason"].capitalize()
    return rng.choice(ASKS[kind]).format(**fields)


def _pick_order(rng: random.Random, db: DB, status: str) -> tuple[dict, dict]:
    """A random customer's order, set to `status` (the world is part of the task)."""
    order = db["orders"][rng.choice(sorted(db["orders"]))]
    order["status"] = status
    return db["customers"][order["customer_id"]], order


def _base(customer: dict, given: list[str], order: dict | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"customer_id": customer["customer_id"], "given": given}
    if order is not None:
        params |= {"order_id": order["order_id"], "product": order["items"][0]}
    return params


def _new_address(rng: random.Random, customer: dict) -> tuple[str, str]:
    while True:
        street = f"{rng.randint(1, 99)} {rng.choice(STREETS.split('|'))}"
        city = rng.choice(CITIES.split("|"))
        if (street, city) != (customer["address"]["street"], customer["address"]["city"]):
            return street, city


# ---------------------------------------------------------------------------------------------
# Questions


@KINDS.register("order_status")
def order_status(rng: random.Random, db: DB) -> KindDraw:
    order = db["orders"][rng.choice(sorted(db["orders"]))]
    customer = db["customers"][order["customer_id"]]
    who, given = identify(rng, customer)
    product = order["items"][0]
    request = ask(rng, "order_status", product=product)
    turns = (rng.choice(GREETINGS) + f"{who} {request}",)
    params = _base(customer, given, order)
    return KindDraw(turns, copy_db(db), params, answer=order["status"], report=(order["status"],))


@KINDS.register("total_spent")
def total_spent(rng: random.Random, db: DB) -> KindDraw:
    customer = db["customers"][rng.choice(sorted(db["customers"]))]
    who, given = identify(rng, customer)
    total = sum(db["orders"][o]["total"] for o in customer["order_ids"])
    request = ask(rng, "total_spent")
    turns = (f"{who} {request}",)
    params = _base(customer, given) | {"total": total}
    return KindDraw(turns, copy_db(db), params, answer=str(total), report=(str(total),))


# ---------------------------------------------------------------------------------------------
# Changes (the user confirms once when asked)


@KINDS.register("cancel_order")
def cancel_order(rng: random.Random, db: DB) -> KindDraw:
    customer, order = _pick_order(rng, db, "pending")
    who, given = identify(rng, customer)
    product, reason = order["items"][0], rng.choice(CANCEL_REASONS)
    request = ask(rng, "cancel_order", product=product, reason=reason)
    goal = copy_db(db)
    goal["orders"][order["order_id"]]["status"] = "cancelled"
    turns = (f"{who} {request}", rng.choice(CONFIRMATIONS))
    oid = (order["order_id"],)
    return KindDraw(
        turns, goal, _base(customer, given, order) | {"reason": reason}, ask_facts=oid, report=oid
    )


@KINDS.register("refund_order")
def refund_order(rng: random.Random, db: DB) -> KindDraw:
    customer, order = _pick_order(rng, db, "delivered")
    who, given = identify(rng, customer)
    product, reason = order["items"][0], rng.choice(REFUND_REASONS)
    request = ask(rng, "refund_order", product=product, reason=reason)
    goal = copy_db(db)
    goal["orders"][order["order_id"]]["status"] = "refunded"
    turns = (f"{who} {request}", rng.choice(CONFIRMATIONS))
    oid = (order["order_id"],)
    return KindDraw(
        turns, goal, _base(customer, given, order) | {"reason": reason}, ask_facts=oid, report=oid
    )


@KINDS.register("update_address")
def update_address(rng: random.Random, db: DB) -> KindDraw:
    customer = db["customers"][rng.choice(sorted(db["customers"]))]
    who, given = identify(rng, customer)
    street, city = _new_address(rng, customer)
    request = ask(rng, "update_address", street=street, city=city)
    goal = copy_db(db)
    goal["customers"][customer["customer_id"]]["address"] = {"street": street, "city": city}
    turns = (f"{who} {request}", rng.choice(CONFIRMATIONS))
    params = _base(customer, given) | {"street": street, "city": city}
    return KindDraw(turns, goal, params, ask_facts=(street,), report=(street,))


@KINDS.register("cancel_and_move")
def cancel_and_move(rng: random.Random, db: DB) -> KindDraw:
    customer, order = _pick_order(rng, db, "pending")
    who, given = identify(rng, customer)
    street, city = _new_address(rng, customer)
    product, reason = order["items"][0], rng.choice(CANCEL_REASONS)
    request = ask(rng, "cancel_and_move", product=product, reason=reason, street=street, city=city)
    goal = copy_db(db)
    goal["orders"][order["order_id"]]["status"] = "cancelled"
    goal["customers"][customer["customer_id"]]["address"] = {"street": street, "city": city}
    turns = (f"{who} {request}", rng.choice(CONFIRMATIONS))
    params = _base(customer, given, order) | {"reason": reason, "street": street, "city": city}
    oid = order["order_id"]
    return KindDraw(turns, goal, params, ask_facts=(oid, street), report=(oid,))


@KINDS.register("cancel_pending")
def cancel_pending(rng: random.Random, db: DB) -> KindDraw:
    """Cancel every pending order of a customer who has two or three of them."""
    many = sorted(c for c, rec in db["customers"].items() if len(rec["order_ids"]) >= 2)
    customer = db["customers"][rng.choice(many)]
    ids = customer["order_ids"]
    pending = sorted(rng.sample(ids, rng.randint(2, len(ids))), key=ids.index)
    for oid in ids:
        if oid in pending:
            db["orders"][oid]["status"] = "pending"
        elif db["orders"][oid]["status"] == "pending":
            db["orders"][oid]["status"] = rng.choice(["shipped", "delivered"])
    who, given = identify(rng, customer)
    reason = rng.choice(CANCEL_REASONS)
    request = ask(rng, "cancel_pending", reason=reason)
    goal = copy_db(db)
    for oid in pending:
        goal["orders"][oid]["status"] = "cancelled"
    turns = (f"{who} {request}", rng.choice(CONFIRMATIONS))
    params = _base(customer, given) | {"pending": pending, "reason": reason}
    return KindDraw(turns, goal, params, ask_facts=tuple(pending), report=tuple(pending))
