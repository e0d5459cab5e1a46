"""Drives state documents from JSON commands, the same code on both hosts.

In Pyodide under Node (state_harness.mjs) it runs over Yjs through web/state_host.js; in
pytest it runs over pycrdt. test_state_in_pyodide.py sends both the same commands and
compares the answers. Every document has the same four roots: map "m", list "l", text "t",
counter "c". Bytes travel as base64.
"""

from __future__ import annotations

import base64
import json
import sys
import traceback
from typing import Any

from waystation.device import StateDoc, StateError, open_state
from waystation.device.hosts import default_state_backend

_watched: dict[str, list[bytes]] = {}
_unsubscribe: dict[str, Any] = {}


def apply_op(doc: StateDoc, op: list[Any]) -> None:
    kind, *args = op
    if kind == "set":
        doc.map("m")[args[0]] = args[1]
    elif kind == "delete_key":
        doc.map("m").delete(args[0])
    elif kind == "insert":
        doc.list("l").insert(args[0], args[1])
    elif kind == "append":
        doc.list("l").append(args[0])
    elif kind == "extend":
        doc.list("l").extend(args[0])
    elif kind == "delete_items":
        doc.list("l").delete(args[0], args[1])
    elif kind == "replace_item":
        items = doc.list("l")
        if len(items):
            items[args[0] % len(items)] = args[1]
    elif kind == "text_insert":
        doc.text("t").insert(args[0], args[1])
    elif kind == "text_delete":
        doc.text("t").delete(args[0], args[1])
    elif kind == "count":
        doc.counter("c").increment(args[0])
    else:
        raise ValueError(f"unknown op {kind!r}")


def snapshot(doc: StateDoc) -> dict[str, Any]:
    return {"m": doc.map("m").to_dict(), "l": doc.list("l").to_list(), "t": str(doc.text("t")), "c": doc.counter("c").value}


def run(command: dict[str, Any]) -> Any:
    cmd = command["cmd"]
    if cmd == "host":
        return {"backend": default_state_backend().name, "platform": sys.platform}
    if cmd == "check":
        return CHECKS[command["name"]]()
    doc = open_state(command["doc"])
    if cmd == "ops":
        if command.get("transaction"):
            with doc.transaction():
                for op in command["ops"]:
                    apply_op(doc, op)
        else:
            for op in command["ops"]:
                apply_op(doc, op)
        return snapshot(doc)
    if cmd == "snapshot":
        return snapshot(doc)
    if cmd == "state_vector":
        return _b64(doc.state_vector())
    if cmd == "encode":
        since = command.get("since")
        return _b64(doc.encode_state(None if since is None else base64.b64decode(since)))
    if cmd == "apply":  # one update, or a list of them in order
        updates = command["update"] if isinstance(command["update"], list) else [command["update"]]
        for update in updates:
            doc.apply_update(base64.b64decode(update))
        return snapshot(doc)
    if cmd == "watch":
        _watched[doc.name] = []
        _unsubscribe[doc.name] = doc.on_update(_watched[doc.name].append)
        return True
    if cmd == "updates":  # what on_update saw since the last call
        seen = _watched[doc.name]
        drained = [_b64(u) for u in seen]
        seen.clear()
        return drained
    if cmd == "unwatch":
        _unsubscribe.pop(doc.name)()
        return True
    raise ValueError(f"unknown command {cmd!r}")


def handle(line: str) -> str:
    """One JSON command in, one JSON line out: {"ok": true, "value": ...} or {"ok": false, "error": ...}."""
    try:
        return json.dumps({"ok": True, "value": run(json.loads(line))})
    except Exception as exc:
        return json.dumps({"ok": False, "error": "".join(traceback.format_exception(exc)), "type": type(exc).__name__})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Checks of the API's edges: the same outcome is expected on both hosts.


def check_errors() -> dict[str, str]:
    doc = open_state("errors")
    doc.map("a")
    outcomes = {}
    attempts = {
        "kind_clash": lambda: doc.list("a"),
        "bad_update": lambda: doc.apply_update(b"\xff\xff\xff"),
        "bad_name": lambda: open_state("no spaces allowed"),
        "nan": lambda: doc.map("a").set("k", float("nan")),
        "big_int": lambda: doc.map("a").set("k", 2**60),
        "not_json": lambda: doc.map("a").set("k", {1, 2}),
        "int_key": lambda: doc.map("a").set("k", {1: 2}),
        "surrogate": lambda: doc.text("t").insert(0, "\ud800"),
        "missing_key": lambda: doc.map("a")["nope"],
        "del_missing_key": lambda: doc.map("a").__delitem__("nope"),
        "list_index": lambda: doc.list("l")[3],
        "del_list_index": lambda: doc.list("l").__delitem__(-1),
        "float_count": lambda: doc.counter("c").increment(1.5),
        "apply_in_transaction": lambda: _apply_in_transaction(doc),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
        except (StateError, TypeError, ValueError, KeyError, IndexError) as exc:
            outcomes[name] = type(exc).__name__
        else:
            outcomes[name] = "no error"
    return outcomes


def _apply_in_transaction(doc: StateDoc) -> None:
    update = doc.encode_state()
    with doc.transaction():
        doc.apply_update(update)


def check_values_round_trip() -> Any:
    doc = open_state("values")
    values = [None, True, False, 0, -1, 2**53 - 1, -(2**53 - 1), 1.5, 1.0, -0.0, 1e-7, 1e20, 1.2345678901234568e20, 1e21,
              "", "héllo 😀", {"nested": {"list": [1, [2, {"x": None}]], "empty": {}}}, [], (1, 2)]
    m, items = doc.map("m"), doc.list("l")
    for i, value in enumerate(values):
        m[str(i)] = value
    items.extend(values)
    return {"map": [m[str(i)] for i in range(len(values))], "list": items.to_list()}


def check_reads_in_a_transaction_see_its_writes() -> Any:
    doc = open_state("txn")
    updates: list[bytes] = []
    off = doc.on_update(updates.append)
    with doc.transaction():
        doc.list("l").extend([1, 2, 3])
        doc.map("m")["k"] = "v"
        doc.counter("c").increment(2)
    single = len(updates)
    with doc.transaction():
        doc.list("l").append(4)
        seen = doc.list("l").to_list()  # a read in the middle sees the append
        doc.map("m")["k2"] = len(seen)
    off()
    doc.map("m")["after"] = 1  # no longer observed
    return {"updates_for_one_transaction": single, "seen": seen, "total_updates": len(updates), "snapshot": snapshot(doc)}


def check_text_counts_code_points() -> Any:
    doc = open_state("text")
    text = doc.text("t")
    text.insert(0, "a😀b")
    text.insert(2, "X")  # after the emoji
    text.insert(-1, "Y")  # before the last
    text.insert(100, "!")  # clamped to the end
    text.append("ü😀")
    text.delete(1, 1)  # the first emoji
    text.delete(-2, 5)  # the last two, clamped
    text.insert(10**20, "")  # clamped in Python: no BigInt reaches JS
    return {"text": str(text), "len": len(text)}


def check_list_api() -> Any:
    doc = open_state("lists")
    items = doc.list("l")
    items.extend(range(10))
    items.insert(-2, "a")
    items.insert(-100, "start")
    items[3] = "three"
    del items[-1]
    del items[1:3]
    del items[::3]
    items.delete(1, 2)
    items[0:1] = ["x", "y"]
    popped = items.pop()
    items.remove("x")
    huge = [items[10**20:], items[-(10**20):10**20], items[1:10**20]]  # clamped in Python: no BigInt reaches JS
    return {"items": items.to_list(), "slices": [items[1:3], items[-2:], items[::2], *huge], "popped": popped,
            "len": len(items), "contains": "y" in items, "index": items.index("y"), "iter": list(items)}


def check_map_api() -> Any:
    doc = open_state("maps")
    m = doc.map("m")
    m.update({"a": 1, "b": [1, 2]}, c="three")
    m.set("d", {"x": 1})
    del m["a"]
    m.delete("missing")
    had = "b" in m, "a" in m, 3 in m
    popped = m.pop("c")
    default = m.get("missing", "default")
    keys, items = sorted(m.keys()), sorted(m.items())
    m.clear()
    return {"had": had, "popped": popped, "default": default, "keys": keys, "items": items, "after_clear": len(m)}


def check_counter_api() -> Any:
    doc = open_state("counters")
    counter = doc.counter("c")
    counter.increment()
    counter.increment(10)
    counter.decrement(3)
    return {"value": counter.value, "int": int(counter), "keys": list(doc.map("c").keys()) == [str(doc.client_id)]}


CHECKS = {name: fn for name, fn in dict(globals()).items() if name.startswith("check_")}
