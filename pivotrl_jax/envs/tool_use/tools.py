"""The shop's tools: OpenAI function specs and their execution against the database.

`execute(db, name, arguments)` validates the arguments against the spec, runs the tool (writes
change `db` in place) and returns a JSON object; failures return `{"error": ...}` and change
nothing. `facts(result)` flattens a result into (entity id, field, value) triples: the
information a lookup reveals, used to call two different lookups equivalent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pivotrl_jax.envs.base import ToolSpec
from pivotrl_jax.envs.messages import function_spec
from pivotrl_jax.envs.tool_use.world import DB, normal
from pivotrl_jax.registry import Registry

Result = dict[str, Any]
ToolFn = Callable[[DB, dict[str, Any]], Result]
TOOL_FNS: Registry[ToolFn] = Registry("shop tool")
WRITES = frozenset({"cancel_order", "refund_order", "update_address"})

_S = {"type": "string"}
TOOLS: list[ToolSpec] = [
    function_spec(
        "find_customer",
        "Find a customer by email or full name.",
        {"email": _S, "name": _S},
        [],
    ),
    function_spec(
        "get_customer",
        "A customer's profile.",
        {"customer_id": _S},
        ["customer_id"],
    ),
    function_spec("list_orders", "All orders of a customer.", {"customer_id": _S}, ["customer_id"]),
    function_spec("get_order", "One order by id.", {"order_id": _S}, ["order_id"]),
    function_spec(
        "cancel_order",
        "Cancel a pending order.",
        {"order_id": _S, "reason": _S},
        ["order_id", "reason"],
    ),
    function_spec(
        "refund_order",
        "Refund a delivered order.",
        {"order_id": _S, "reason": _S},
        ["order_id", "reason"],
    ),
    function_spec(
        "update_address",
        "Change a customer's address.",
        {"customer_id": _S, "street": _S, "city": _S},
        ["customer_id", "street", "city"],
    ),
]
_PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def dumps(result: Result) -> str:
    """The tool message content: compact JSON."""
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False)


def _argument_error(name: str, args: dict[str, Any]) -> str | None:
    params = _PARAMS[name]
    for key, value in args.items():  # unknown arguments are refused
        if key not in params["properties"]:
            return f"unexpected argument '{key}'"
        if not isinstance(value, str):
            return f"argument '{key}' must be a string"
    missing = [k for k in params.get("required", []) if k not in args]
    return f"missing argument '{missing[0]}'" if missing else None


def execute(db: DB, name: str, args: dict[str, Any]) -> Result:
    if name not in TOOL_FNS:
        return {"error": f"unknown tool '{name}'"}
    problem = _argument_error(name, args)
    if problem is not None:
        return {"error": problem}
    return TOOL_FNS.get(name)(db, args)


def _order_view(order: dict[str, Any]) -> Result:
    return {k: order[k] for k in ("order_id", "customer_id", "items", "total", "status")}


def _customer(db: DB, args: dict[str, Any]) -> dict[str, Any] | None:
    return db["customers"].get(args["customer_id"].strip().upper())


def _order(db: DB, args: dict[str, Any]) -> dict[str, Any] | None:
    return db["orders"].get(args["order_id"].strip().upper())


@TOOL_FNS.register("find_customer")
def find_customer(db: DB, args: dict[str, Any]) -> Result:
    if not args:
        return {"error": "give an email or a name"}
    found = [
        c
        for c in db["customers"].values()
        if all(normal(c[k]) == normal(args[k]) for k in ("email", "name") if k in args)
    ]
    if not found:
        return {"error": "customer not found"}
    c = found[0]
    return {"customer_id": c["customer_id"], "name": c["name"], "email": c["email"]}


@TOOL_FNS.register("get_customer")
def get_customer(db: DB, args: dict[str, Any]) -> Result:
    c = _customer(db, args)
    if c is None:
        return {"error": "customer not found"}
    return {k: c[k] for k in ("customer_id", "name", "email", "address", "order_ids")}


@TOOL_FNS.register("list_orders")
def list_orders(db: DB, args: dict[str, Any]) -> Result:
    c = _customer(db, args)
    if c is None:
        return {"error": "customer not found"}
    return {
        "customer_id": c["customer_id"],
        "orders": [_order_view(db["orders"][o]) for o in c["order_ids"]],
    }


@TOOL_FNS.register("get_order")
def get_order(db: DB, args: dict[str, Any]) -> Result:
    o = _order(db, args)
    return {"error": "order not found"} if o is None else _order_view(o)


def _set_status(need: str, new: str) -> ToolFn:
    def run(db: DB, args: dict[str, Any]) -> Result:
        o = _order(db, args)
        if o is None:
            return {"error": "order not found"}
        if o["status"] != need:
            return {"error": f"order is {o['status']}; only {need} orders can be {new}"}
        o["status"], o["note"] = new, args["reason"]
        out = {"order_id": o["order_id"], "status": new}
        return {**out, "amount": o["total"]} if new == "refunded" else out

    return run


TOOL_FNS.register("cancel_order", _set_status("pending", "cancelled"))
TOOL_FNS.register("refund_order", _set_status("delivered", "refunded"))


@TOOL_FNS.register("update_address")
def update_address(db: DB, args: dict[str, Any]) -> Result:
    c = _customer(db, args)
    if c is None:
        return {"error": "customer not found"}
    c["address"] = {"street": args["street"].strip(), "city": args["city"].strip()}
    return {"customer_id": c["customer_id"], "address": c["address"]}


_ID_KEYS = ("order_id", "customer_id", "product_id")


def facts(value: Any, owner: Any = None) -> set[tuple[Any, str, Any]]:
    """(entity, field, value) triples; a record's entity is its first id field, nested records
    without one (an address) belong to their parent, lists of scalars become tuples."""
    out: set[tuple[Any, str, Any]] = set()
    if isinstance(value, list):
        for v in value:
            out |= facts(v, owner)
    elif isinstance(value, dict):
        entity = next((value[k] for k in _ID_KEYS if k in value), owner)
        for k, v in value.items():
            if isinstance(v, list) and not any(isinstance(x, dict | list) for x in v):
                out.add((entity, k, tuple(normal(v))))
            elif isinstance(v, dict | list):
                out |= facts(v, entity)
            else:
                out.add((entity, k, normal(v)))
    return out
