"""waystation.device.state on CPython (the pycrdt backend): every operation, JSON values,
updates between replicas, and convergence under any interleaving (hypothesis). The same API
over Yjs in Pyodide, and Yjs <-> pycrdt: tests/pyodide/test_state_in_pyodide.py."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from waystation.device import App, Context, StateDoc, StateError, open_state
from waystation.device.hosts import default_state_backend
from waystation.device.hosts.state_native import NativeStateBackend

from bundle_factory import make_bundle


@pytest.fixture
def backend() -> NativeStateBackend:
    return NativeStateBackend()


@pytest.fixture
def doc(backend: NativeStateBackend) -> StateDoc:
    return open_state("doc", backend)


def content(doc: StateDoc) -> dict[str, Any]:
    return {"m": doc.map("m").to_dict(), "l": doc.list("l").to_list(), "t": str(doc.text("t")), "c": doc.counter("c").value}


# --- the wrappers ---


def test_map_operations(doc: StateDoc) -> None:
    m = doc.map("m")
    m["a"] = 1
    m.set("b", {"nested": [1, None]})
    m.update({"c": "three"}, d=4.5)
    assert m["a"] == 1 and m.get("b") == {"nested": [1, None]} and m.get("zz", "default") == "default"
    assert len(m) == 4 and "c" in m and "zz" not in m and 1 not in m
    assert sorted(m) == sorted(m.keys()) == ["a", "b", "c", "d"]
    assert sorted(m.values(), key=str) == sorted([1, {"nested": [1, None]}, "three", 4.5], key=str)
    assert dict(m.items()) == m.to_dict() == {"a": 1, "b": {"nested": [1, None]}, "c": "three", "d": 4.5}
    del m["a"]
    m.delete("b")
    m.delete("never there")  # no error
    assert m.pop("c") == "three" and m.to_dict() == {"d": 4.5}
    with pytest.raises(KeyError):
        m["a"]
    with pytest.raises(KeyError):
        del m["a"]
    m.clear()
    assert len(m) == 0 and m == {}


def test_values_are_copied_in_and_out(doc: StateDoc) -> None:
    value = {"tags": ["a"]}
    doc.map("m")["k"] = value
    value["tags"].append("b")  # the stored copy does not change
    read = doc.map("m")["k"]
    read["tags"].append("c")  # nor through what a read returned
    assert doc.map("m")["k"] == {"tags": ["a"]}


def test_list_operations(doc: StateDoc) -> None:
    items = doc.list("l")
    items.append(0)
    items.extend([1, 2, 3, 4, 5])
    items.insert(1, "after 0")
    items.insert(-1, "before 5")
    items.insert(100, "end")
    items.insert(-100, "start")
    assert items.to_list() == ["start", 0, "after 0", 1, 2, 3, 4, "before 5", 5, "end"]
    assert (items[0], items[-1], items[2:4], items[-3:], items[::4]) == (
        "start", "end", ["after 0", 1], ["before 5", 5, "end"], ["start", 2, 5])
    assert len(items) == 10 and "end" in items and items.index(3) == 5 and items.count(3) == 1
    items[0] = "START"
    items[-1] = "END"
    items[1:3] = ["a", "b", "c"]
    assert items.to_list() == ["START", "a", "b", "c", 1, 2, 3, 4, "before 5", 5, "END"]
    del items[0]
    del items[-1]
    del items[0:3]
    assert items.to_list() == [1, 2, 3, 4, "before 5", 5]
    del items[::2]
    assert items.to_list() == [2, 4, 5]
    items.delete(1, 10)  # clamped as slicing is
    assert list(items) == [2] and items.pop() == 2 and len(items) == 0
    with pytest.raises(IndexError):
        items[0]
    with pytest.raises(IndexError):
        items[10**20]
    with pytest.raises(IndexError):
        del items[-1]
    assert items[10**20 :] == items[-(10**20) : 10**20] == []
    items.extend(range(3))
    items.clear()
    assert items.to_list() == []


def test_text_operations_count_code_points(doc: StateDoc) -> None:
    text = doc.text("t")
    text.insert(0, "héllo")
    text.append(" 😀 world")
    text += "!"
    text.insert(7, "X")  # after the emoji: pycrdt itself counts UTF-8 bytes here
    text.insert(-1, "?")
    assert str(text) == "héllo 😀X world?!" and len(text) == 16
    text.delete(6, 2)
    text.delete(-2)
    text.delete(100, 5)  # clamped: nothing
    assert str(text) == "héllo  world!"


def test_counter(doc: StateDoc, backend: NativeStateBackend) -> None:
    counter = doc.counter("c")
    counter.increment()
    counter.increment(10)
    counter.decrement(4)
    assert counter.value == int(counter) == 7
    other = open_state("other", backend)
    other.apply_update(doc.encode_state())
    other.counter("c").increment(5)  # concurrently with the next line
    counter.increment(1)
    doc.apply_update(other.encode_state())
    other.apply_update(doc.encode_state())
    assert counter.value == other.counter("c").value == 13
    # Stored as a map of per-client totals: each replica writes its own key only.
    assert doc.map("c").to_dict() == {str(doc.client_id): 8, str(other.client_id): 5}


# --- JSON values ---


@pytest.mark.parametrize("value, read", [
    (None, None), (True, True), (0, 0), (-(2**53 - 1), -(2**53 - 1)), (1.5, 1.5), ("héllo 😀", "héllo 😀"),
    (1.0, 1), (-0.0, 0), (1e20, 100000000000000000000), (1.2345678901234568e20, 123456789012345680000), (1e21, 1e21),
    ((1, 2), [1, 2]), ({"a": [{"b": None}], "c": {}}, {"a": [{"b": None}], "c": {}}),
])
def test_json_values_read_back_as_javascript_reads_them(doc: StateDoc, value: Any, read: Any) -> None:
    doc.map("m")["k"] = value
    doc.list("l").append(value)
    assert doc.map("m")["k"] == read and doc.list("l")[0] == read
    assert type(doc.map("m")["k"]) is type(read)


@pytest.mark.parametrize("value, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (2**53, ValueError), ("\ud800", ValueError),
    ({1: "int key"}, TypeError), ({"a", "set"}, TypeError), (b"bytes", TypeError), (object(), TypeError),
    ([1, [2, float("nan")]], ValueError),
])
def test_what_json_cannot_hold_is_refused_before_anything_is_written(doc: StateDoc, value: Any, error: type) -> None:
    with pytest.raises(error):
        doc.map("m")["k"] = value
    with pytest.raises(error):
        doc.list("l").append(value)
    assert content(doc) == {"m": {}, "l": [], "t": "", "c": 0}


def test_bad_arguments(doc: StateDoc) -> None:
    with pytest.raises(TypeError):
        doc.map("m")[1] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        doc.text("t").insert(0, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        doc.counter("c").increment(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        doc.list("l").insert("0", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        doc.map("")


# --- the document ---


@pytest.mark.parametrize("name", ["notes", "a.b:c-d_1", "x" * 128])
def test_state_names_are_sync_room_names(backend: NativeStateBackend, name: str) -> None:
    assert open_state(name, backend).name == name


@pytest.mark.parametrize("name", ["", "a/b", "with space", "x" * 129, "é"])
def test_other_names_are_refused(backend: NativeStateBackend, name: str) -> None:
    with pytest.raises(ValueError, match="sync room"):
        open_state(name, backend)


def test_a_name_is_one_document(backend: NativeStateBackend) -> None:
    open_state("same", backend).map("m")["k"] = 1
    assert open_state("same", backend).map("m")["k"] == 1
    assert backend.names() == ["same"]


def test_a_root_is_one_kind(doc: StateDoc) -> None:
    doc.map("x")
    with pytest.raises(StateError, match="'x' of this document is a map, not a list"):
        doc.list("x")
    doc.counter("x")  # a counter is a map


def test_a_transaction_is_one_update(doc: StateDoc) -> None:
    updates: list[bytes] = []
    unsubscribe = doc.on_update(updates.append)
    with doc.transaction():
        doc.map("m")["a"] = 1
        with doc.transaction():  # joins the outer one
            doc.list("l").append(1)
        doc.counter("c").increment()
        assert doc.list("l").to_list() == [1]  # reads see the transaction's writes
    assert len(updates) == 1
    doc.text("t").insert(0, "x")
    assert len(updates) == 2
    unsubscribe()
    doc.text("t").insert(0, "y")
    assert len(updates) == 2
    replica = open_state("replica", NativeStateBackend())
    for update in updates:
        replica.apply_update(update)
    assert str(replica.text("t")) == "x" and replica.counter("c").value == 1


def test_applying_an_update_inside_a_transaction_is_refused(doc: StateDoc) -> None:
    with pytest.raises(StateError, match="outside a transaction"), doc.transaction():
        doc.apply_update(doc.encode_state())


def test_a_bad_update_changes_nothing(doc: StateDoc) -> None:
    doc.map("m")["kept"] = True
    before = doc.encode_state()
    with pytest.raises(StateError, match="does not decode"):
        doc.apply_update(b"\xff\xff\xff")
    assert doc.encode_state() == before
    with pytest.raises(StateError, match="not a state vector"):
        doc.encode_state(since=b"\xff\xff")


def test_two_replicas_sync_by_state_vector_and_converge(backend: NativeStateBackend) -> None:
    a, b = open_state("a", backend), open_state("b", backend)
    a.map("m")["from"] = "a"
    a.list("l").extend([1, 2])
    a.text("t").insert(0, "hello")
    b.apply_update(a.encode_state())
    # concurrent edits
    a.list("l").append("a")
    a.text("t").append(" from a")
    b.list("l").insert(0, "b")
    b.text("t").insert(0, "b says: ")
    b.map("m")["from"] = "b"
    diff = a.encode_state(since=b.state_vector())
    assert len(diff) < len(a.encode_state())  # only what b lacks
    b.apply_update(diff)
    a.apply_update(b.encode_state(since=a.state_vector()))
    assert content(a) == content(b)
    assert content(a)["l"] == ["b", 1, 2, "a"] and content(a)["t"] == "b says: hello from a"


def test_updates_interoperate_with_plain_pycrdt(doc: StateDoc) -> None:
    """The document is plain pycrdt content: other pycrdt code (the sync server) reads it."""
    doc.map("m")["k"] = [1, "two"]
    plain: Doc[Any] = Doc()
    plain.apply_update(doc.encode_state())
    assert plain.get("m", type=Map).to_py() == {"k": [1.0, "two"]}


# pycrdt 0.14.13 applying updates one at a time out of causal order can end wrong
# (tests/unit/test_sync_convergence.py's strict xfail); the native backend rebuilds instead.
OUT_OF_ORDER_CASES = [
    [["set", "k", 0], ["text_insert", 0, "a"], ["set", "k", 1]],
    [["append", 0], ["append", 1], ["text_insert", 0, "a"]],
    [["append", 0], ["delete_items", 0, 1], ["append", 2], ["set", "k", 3]],
]


def edit(doc: StateDoc, op: list[Any]) -> None:
    kind, *args = op
    if kind == "set":
        doc.map("m")[args[0]] = args[1]
    elif kind == "delete_key":
        doc.map("m").delete(args[0])
    elif kind == "append":
        doc.list("l").append(args[0])
    elif kind == "insert":
        doc.list("l").insert(args[0], args[1])
    elif kind == "delete_items":
        doc.list("l").delete(args[0], args[1])
    elif kind == "text_insert":
        doc.text("t").insert(args[0], args[1])
    elif kind == "text_delete":
        doc.text("t").delete(args[0], args[1])
    elif kind == "count":
        doc.counter("c").increment(args[0])


def history(doc: StateDoc, ops: list[list[Any]]) -> list[bytes]:
    updates: list[bytes] = []
    unsubscribe = doc.on_update(updates.append)
    for op in ops:
        edit(doc, op)
    unsubscribe()
    return updates


@pytest.mark.parametrize("ops", OUT_OF_ORDER_CASES)
def test_updates_applied_in_any_order_end_right(backend: NativeStateBackend, ops: list[list[Any]]) -> None:
    author = open_state("author", backend)
    updates = history(author, ops)
    for n, order in enumerate(itertools.permutations(updates)):
        replica = open_state(f"replica{n}", backend)
        for update in order:
            replica.apply_update(update)
        assert content(replica) == content(author), order


def test_a_replica_passes_on_updates_it_holds_pending(backend: NativeStateBackend) -> None:
    """As Yjs's encodeStateAsUpdate does: what waits for a predecessor is not lost in transit."""
    author, relay, last = (open_state(name, backend) for name in ("author", "relay", "last"))
    first, second = history(author, [["append", 1], ["append", 2]])
    relay.apply_update(second)  # pending: it needs `first`
    assert relay.list("l").to_list() == []
    last.apply_update(relay.encode_state())
    last.apply_update(first)
    assert last.list("l").to_list() == [1, 2]


# --- convergence, by hypothesis ---

value = st.one_of(
    st.none(), st.booleans(), st.integers(-99, 99), st.text("ab😀", max_size=3), st.lists(st.integers(0, 9), max_size=2),
)
op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("kl"), value),
    st.tuples(st.just("delete_key"), st.sampled_from("kl")),
    st.tuples(st.just("append"), value),
    st.tuples(st.just("insert"), st.integers(-3, 6), value),
    st.tuples(st.just("delete_items"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("text_insert"), st.integers(-2, 8), st.text("ab😀\n", min_size=1, max_size=3)),
    st.tuples(st.just("text_delete"), st.integers(-2, 8), st.integers(0, 3)),
    st.tuples(st.just("count"), st.integers(-3, 5)),
).map(list)
REPLICAS = 3
step = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, REPLICAS - 1), st.lists(op, min_size=1, max_size=3), st.booleans()),
    # one update the source has emitted (made or applied), any of them: late, repeated, early
    st.tuples(st.just("deliver"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1), st.integers(0, 99)),
    # all of them, shuffled
    st.tuples(st.just("scatter"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1), st.integers(0, 2**16)),
    # sync steps 1 and 2, as y-websocket does
    st.tuples(st.just("pull"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1)),
)


class Replica:
    def __init__(self, backend: NativeStateBackend, name: str) -> None:
        self.doc = open_state(name, backend)
        self.emitted: list[bytes] = []
        self.doc.on_update(self.emitted.append)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, max_size=40), seed=st.integers(0, 2**16))
def test_replicas_converge_under_any_interleaving_of_edits_and_merges(steps, seed) -> None:
    backend = NativeStateBackend()
    replicas = [Replica(backend, f"r{i}") for i in range(REPLICAS)]
    for kind, *args in steps:
        if kind == "edit":
            with replicas[args[0]].doc.transaction() if args[2] else _nothing():
                for change in args[1]:
                    edit(replicas[args[0]].doc, change)
            continue
        src, dst = replicas[args[0]], replicas[args[1]]
        if kind == "deliver" and src.emitted:
            dst.doc.apply_update(src.emitted[args[2] % len(src.emitted)])
        elif kind == "scatter":
            for update in random.Random(args[2]).sample(src.emitted, len(src.emitted)):
                dst.doc.apply_update(update)
        elif kind == "pull":
            dst.doc.apply_update(src.doc.encode_state(since=dst.doc.state_vector()))
    # Finally each replica gets every update the others emitted, shuffled (no state vectors).
    emitted = [list(r.emitted) for r in replicas]
    shuffle = random.Random(seed)
    for i, dst in enumerate(replicas):
        updates = [u for j, e in enumerate(emitted) if j != i for u in e]
        for update in shuffle.sample(updates, len(updates)):
            dst.doc.apply_update(update)
    contents = [content(r.doc) for r in replicas]
    assert all(c == contents[0] for c in contents), contents


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- the context and the runtime ---


def test_the_native_backend_is_the_default_on_cpython() -> None:
    assert default_state_backend().name == "native"
    assert default_state_backend() is default_state_backend()


def test_the_context_gives_state_from_its_backend(backend: NativeStateBackend) -> None:
    ctx = Context({}, "b", None, states=backend)
    ctx.state("notes").list("notes").append("hi")
    assert open_state("notes", backend).list("notes").to_list() == ["hi"]
    assert Context({}, "b", None, states=backend).state("notes").list("notes")[0] == "hi"


WORKFLOW = b'''
from waystation.device import export

@export
async def add_note(ctx, text: str, tags: list[str]) -> dict:
    notes = ctx.state("notes")
    with notes.transaction():
        notes.list("notes").append({"text": text, "tags": tags})
        for tag in tags:
            notes.counter("tag:" + tag).increment()
    return {"notes": notes.list("notes").to_list(), "red": notes.counter("tag:red").value}
'''


def test_state_outlives_calls_and_bundle_versions(tmp_path: Path) -> None:
    """In the runtime's own backend, as a workflow meets it (tests/unit/conftest.py empties it for each test)."""

    async def scenario() -> list[Any]:
        v1 = await App.open(make_bundle(tmp_path, None, "notes", "1.0.0", body=WORKFLOW))
        first = await v1.call("add_note", {"text": "one", "tags": ["red"]})
        v2 = await App.open(make_bundle(tmp_path, None, "notes", "1.0.1", body=WORKFLOW))
        second = await v2.call("add_note", {"text": "two", "tags": ["red", "blue"]})
        return [first["result"], second["result"]]

    first, second = asyncio.run(scenario())
    assert first == {"notes": [{"text": "one", "tags": ["red"]}], "red": 1}
    assert second == {"notes": [{"text": "one", "tags": ["red"]}, {"text": "two", "tags": ["red", "blue"]}], "red": 2}
