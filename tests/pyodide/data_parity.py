"""Query cases as plain data, run through waystation.device.data: the same file runs on CPython and in Pyodide.

A case is {"events": [...], "items": [...], "query": [steps], "read": [kind, column?]}; steps are
["since", t], ["between", a, b], ["where", column, op, value], ["join", "item_id"],
["select", [columns]], ["group", [columns], {name: [column, aggregate]}], ["sort", [columns], descending],
["limit", n]. `run_case` answers it with a fresh in-memory database, so results do not
depend on what else ran.
"""

from __future__ import annotations

import base64
import json
import random
import sqlite3
from typing import Any

from waystation.device.data import Declarations, DeviceData
from waystation.device.data.schema import pack_vector

__all__ = ["BASE_TS", "DECLARATIONS", "generate_case", "run_case", "run_cases_json"]

BASE_TS = 1_800_000_000.0
DECLARATIONS = {
    "events": {"clicks": {"fields": {"item_id": "str", "user": "str", "dwell": "int", "score": "float", "liked": "bool",
                                     "emb": "vector[3]"}}},
    "features": {"items": {"key": "item_id"}},
}
ITEM_COLUMNS = [["item_id", "str"], ["cat", "str"], ["price", "float"], ["vec", "vector[3]"]]


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", isolation_level=None)

    def connect(self) -> sqlite3.Connection:
        return self.db

    def durable(self) -> None:
        return None


def load(case: dict[str, Any]) -> DeviceData:
    data = DeviceData(MemoryBackend(), "parity", Declarations.parse(DECLARATIONS["events"], DECLARATIONS["features"]))
    if case["events"]:
        rows = data.events.prepare("clicks", case["events"])
        # Deterministic ids, so both hosts (and pandas) see the same table.
        rows = [(f"{i:032x}", *row[1:]) for i, row in enumerate(rows)]
        data.events.insert("clicks", rows)
    items = [[r["item_id"], r["cat"], r["price"], base64.b64encode(pack_vector(r["vec"], 3, "vec")).decode()]
             for r in case["items"]]
    data.features.apply({"name": "items", "version": 1, "full": True, "key": "item_id", "columns": ITEM_COLUMNS, "rows": items})
    return data


def build(data: DeviceData, steps: list[list[Any]]) -> Any:
    query: Any = data.event_query("clicks")
    for step in steps:
        kind, args = step[0], step[1:]
        if kind == "since":
            query = query.since(args[0])
        elif kind == "between":
            query = query.between(args[0], args[1])
        elif kind == "where":
            query = query.where(args[0], args[1], args[2])
        elif kind == "join":
            query = query.join(data.feature_query("items"), on=args[0])
        elif kind == "select":
            query = query.select(*args[0])
        elif kind == "group":
            query = query.group_by(*args[0]).agg(**{k: tuple(v) for k, v in args[1].items()})
        elif kind == "sort":
            query = query.sort(*args[0], descending=args[1])
        elif kind == "limit":
            query = query.limit(args[0])
        else:
            raise ValueError(f"unknown step {kind!r}")
    return query


def run_case(case: dict[str, Any]) -> Any:
    """The case's answer: {"ok": value} or {"error": the DataError's message}."""
    from waystation.device.errors import DataError

    try:
        query = build(load(case), case["query"])
        kind = case["read"][0]
        if kind == "rows":
            return {"ok": query.rows()}
        if kind == "count":
            return {"ok": query.count()}
        if kind == "mean":
            return {"ok": query.mean(case["read"][1])}
        if kind == "tensor":
            tensor = query.tensor(case["read"][1])
            return {"ok": {"shape": list(tensor.shape), "values": tensor.tolist()}}
        raise ValueError(f"unknown read {kind!r}")
    except DataError as exc:
        return {"error": str(exc)}


def run_cases_json(text: str) -> str:
    return json.dumps([run_case(c) for c in json.loads(text)])


# --- a deterministic generator, for the Pyodide comparison (test_query.py uses hypothesis) --------------

USERS = ["ann", "bob", "cy"]
ITEMS = ["a", "b", "c", "d", "e"]
CATS = ["x", "y"]


def generate_case(rng: random.Random) -> dict[str, Any]:
    def vec() -> list[float]:
        return [rng.randint(-8, 8) / 4 for _ in range(3)]

    events = [{"item_id": rng.choice([*ITEMS, "zz"]), "user": rng.choice(USERS), "dwell": rng.randint(-5, 50),
               "score": rng.randint(-20, 20) / 8, "liked": rng.random() < 0.5, "emb": vec(),
               "ts": BASE_TS + rng.randint(0, 600)} for _ in range(rng.randint(0, 40))]
    items = [{"item_id": i, "cat": rng.choice(CATS), "price": rng.randint(0, 40) / 4, "vec": vec()}
             for i in ITEMS if rng.random() < 0.8]
    steps: list[list[Any]] = []

    def moment() -> float:  # often exactly an event's time: the boundaries are where off-by-one hides
        return rng.choice(events)["ts"] if events and rng.random() < 0.6 else BASE_TS + rng.randint(0, 600)

    def dwell() -> int:
        return rng.choice(events)["dwell"] if events and rng.random() < 0.6 else rng.randint(-5, 50)

    if rng.random() < 0.5:
        steps.append(["since", moment()])
    elif rng.random() < 0.3:
        a, b = sorted([moment(), moment()])
        steps.append(["between", a, b])
    for _ in range(rng.randint(0, 2)):
        steps.append(rng.choice([
            ["where", "dwell", rng.choice(["<", "<=", ">", ">=", "==", "!="]), dwell()],
            ["where", "user", rng.choice(["==", "!="]), rng.choice(USERS)],
            ["where", "item_id", rng.choice(["in", "not in"]), rng.sample(ITEMS, 2)],
            ["where", "liked", "==", rng.random() < 0.5],
            ["where", "score", ">", rng.randint(-20, 20) / 8],
        ]))
    joined = rng.random() < 0.4
    if joined:
        steps.append(["join", "item_id"])
    shape = rng.choice(["group", "rows", "mean", "count", "tensor"])
    if shape == "group":
        keys = rng.choice([["user"], ["item_id"], ["user", "liked"]] + ([["cat"]] if joined else []))
        numeric = ["dwell", "score"] + (["price"] if joined else [])
        aggs = {"n": ["id", "count"]}
        for i, fn in enumerate(rng.sample(["sum", "mean", "min", "max"], rng.randint(1, 3))):
            aggs[f"a{i}"] = [rng.choice(numeric), fn]
        steps.append(["group", keys, aggs])
        if rng.random() < 0.3:
            steps.append(["where", "n", ">=", 2])
        steps.append(["sort", keys, rng.random() < 0.5])
        if rng.random() < 0.4:
            steps.append(["limit", rng.randint(0, 3)])
        return {"events": events, "items": items, "query": steps, "read": ["rows"]}
    if shape == "rows":
        cols = ["id", "ts", "user", "dwell", "liked"] + (["cat", "vec"] if joined else ["emb"])
        steps.append(["sort", ["ts", "id"], rng.random() < 0.5])
        if rng.random() < 0.6:
            steps.append(["limit", rng.randint(0, 10)])
        steps.append(["select", rng.sample(cols, rng.randint(1, len(cols)))])
        return {"events": events, "items": items, "query": steps, "read": ["rows"]}
    if shape == "mean":
        column = rng.choice(["emb", "dwell", "score"] + (["vec", "price"] if joined else []))
        return {"events": events, "items": items, "query": steps, "read": ["mean", column]}
    if shape == "tensor":
        steps.append(["sort", ["ts", "id"], False])
        read = ["tensor", rng.choice(["emb", "vec"] if joined else ["emb"])]
        return {"events": events, "items": items, "query": steps, "read": read}
    return {"events": events, "items": items, "query": steps, "read": ["count"]}
