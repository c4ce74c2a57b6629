"""The shop database of the tool-use domain: customers, products and orders, as plain JSON.

`make_world(rng)` draws 6-8 customers with 1-3 orders of 1-2 products each. `functional(db)`
is the part of the state a task is judged on: everything except free-text notes (a cancel
reason is recorded, but two reasons that say the same thing in other words are equal outcomes).
"""

from __future__ import annotations

import copy
import random
from typing import Any

_FIRST = (
    "ana ben carla dev eva farid gina hugo ivy jon kai lena maya noor omar pia raj sara tom uma"
)
_LAST = "lopez smith chen okafor novak silva kim brown haddad rossi"
FIRST, LAST = _FIRST.split(), _LAST.split()
PRODUCTS = (
    ("desk lamp", 35),
    ("blue mug", 12),
    ("backpack", 48),
    ("headphones", 90),
    ("notebook", 5),
    ("water bottle", 18),
    ("keyboard", 60),
    ("phone case", 15),
    ("plant pot", 22),
    ("yoga mat", 30),
)
STREETS = "oak street|elm road|hill lane|river way|park avenue|mill street|lake road|king street"
CITIES = "springfield|riverton|lakeside|fairview|greenville|newport|ashford|bayside"
STATUSES = ("pending", "shipped", "delivered")
NOTE_FIELDS = ("note",)

DB = dict[str, dict[str, dict[str, Any]]]  # table -> id -> record


def make_world(rng: random.Random) -> DB:
    products = {
        f"P{10 + k}": {"product_id": f"P{10 + k}", "name": name, "price": price}
        for k, (name, price) in enumerate(PRODUCTS)
    }
    names = rng.sample([(f, la) for f in FIRST for la in LAST], rng.randint(6, 8))
    customer_ids = rng.sample(range(100, 1000), len(names))
    order_ids = iter(rng.sample(range(1000, 10000), 3 * len(names)))
    customers: dict[str, dict[str, Any]] = {}
    orders: dict[str, dict[str, Any]] = {}
    for (first, last), num in zip(names, customer_ids):
        cid = f"C{num}"
        mine = []
        picks = rng.sample(list(products), 4)  # a customer's orders hold distinct products
        for k in range(rng.randint(1, 3)):
            oid = f"O{next(order_ids)}"
            items = [picks[k]] + ([picks[3]] if k == 0 and rng.random() < 0.3 else [])
            orders[oid] = {
                "order_id": oid,
                "customer_id": cid,
                "items": [products[p]["name"] for p in items],
                "total": sum(products[p]["price"] for p in items),
                "status": rng.choice(STATUSES),
            }
            mine.append(oid)
        customers[cid] = {
            "customer_id": cid,
            "name": f"{first.title()} {last.title()}",
            "email": f"{first}.{last}@mail.com",
            "address": {
                "street": f"{rng.randint(1, 99)} {rng.choice(STREETS.split('|'))}",
                "city": rng.choice(CITIES.split("|")),
            },
            "order_ids": mine,
        }
    return {"customers": customers, "orders": orders, "products": products}


def copy_db(db: DB) -> DB:
    return copy.deepcopy(db)


def normal(value: Any) -> Any:
    """Strings compared case- and space-insensitively."""
    if isinstance(value, str):
        return " ".join(value.lower().split())
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items() if k not in NOTE_FIELDS}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def functional(db: DB) -> Any:
    """The judged state: notes dropped, strings normalised."""
    return normal(db)


def orders_of(db: DB, cid: str) -> list[dict[str, Any]]:
    return [db["orders"][o] for o in db["customers"][cid]["order_ids"]]
