"""Properties, by hypothesis: pycrdt replicas converge whatever the order updates travel in;
squashing a history keeps the document; the server's parser refuses garbage cleanly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, merge_updates

from waystation.server.sync.client import Client
from waystation.server.sync.compaction import squash
from waystation.server.sync.errors import ProtocolError
from waystation.server.sync.protocol import encode_update, parse
from waystation.server.sync.rooms import Room
from waystation.server.sync.store import UpdateStore

REPLICAS = 3

edit = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 50), st.text(alphabet="abcxyz", min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, 50), st.integers(1, 3)),
    st.tuples(st.just("append"), st.integers(0, 9)),
    st.tuples(st.just("set"), st.sampled_from("kl"), st.integers(0, 9)),
)
step = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, REPLICAS - 1), edit),
    # replica `dst` syncs from `src` as y-websocket does: step 1 (dst's state vector), step 2 (what dst lacks)
    st.tuples(st.just("sync"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1)),
)


class Replica:
    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.seen: list[bytes] = []  # every update made here or received, in arrival order

    def edit(self, change: tuple[Any, ...]) -> None:
        state = self.doc.get_state()
        text, items, meta = self.roots(self.doc)
        kind = change[0]
        if kind == "insert":
            text.insert(min(change[1], len(text)), change[2])
        elif kind == "delete" and len(text):
            start = min(change[1], len(text) - 1)
            del text[start : min(start + change[2], len(text))]
        elif kind == "append":
            items.append(change[1])
        elif kind == "set":
            meta[change[1]] = change[2]
        self.seen.append(self.doc.get_update(state))

    def sync_from(self, other: Replica) -> None:
        update = other.doc.get_update(self.doc.get_state())
        self.doc.apply_update(update)
        self.seen.append(update)

    @staticmethod
    def roots(doc: Doc[Any]) -> tuple[Text, Array[Any], Map[Any]]:
        return doc.get("text", type=Text), doc.get("items", type=Array), doc.get("meta", type=Map)

    @classmethod
    def content(cls, doc: Doc[Any]) -> tuple[str, list[Any], dict[str, Any]]:
        text, items, meta = cls.roots(doc)
        return str(text), items.to_py() or [], meta.to_py() or {}


def doc_of(*updates: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, max_size=50), final_order=st.permutations(range(REPLICAS)))
def test_replicas_converge_under_any_interleaving_of_edits_and_syncs(steps, final_order) -> None:
    replicas = [Replica() for _ in range(REPLICAS)]
    for s in steps:
        if s[0] == "edit":
            replicas[s[1]].edit(s[2])
        else:
            replicas[s[2]].sync_from(replicas[s[1]])
    hub = Replica()  # finally all meet on a server, in some order, and sync from it
    for i in final_order:
        hub.sync_from(replicas[i])
    for replica in replicas:
        replica.sync_from(hub)
    contents = [Replica.content(r.doc) for r in [hub, *replicas]]
    assert all(content == contents[0] for content in contents)
    # The server's compaction of the history it stored holds the same document.
    assert Replica.content(doc_of(squash(hub.seen))) == contents[0]


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(edit, min_size=1, max_size=40), data=st.data())
def test_squash_keeps_updates_that_are_still_pending(edits, data) -> None:
    """A history with holes (a client's later updates came, earlier ones not yet) squashes
    without losing the later ones: once the holes arrive, the document is whole."""
    author = Replica()
    for change in edits:
        author.edit(change)
    history = author.seen
    held_back = data.draw(st.sets(st.integers(0, len(history) - 1), max_size=len(history) - 1))
    stored = [u for i, u in enumerate(history) if i not in held_back]
    squashed = squash(stored)
    late = [history[i] for i in sorted(held_back)]
    # Loaded as a room loads its rows: merged, then applied at once (see the xfail below).
    assert Replica.content(doc_of(merge_updates(squashed, *late))) == Replica.content(author.doc)


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(edit, min_size=1, max_size=30), data=st.data())
def test_a_room_ends_right_whatever_order_updates_reach_it_in(tmp_path_factory, edits, data) -> None:
    """Unlike a bare pycrdt Doc (the xfail below): a room rebuilds while updates are pending."""
    author = Replica()
    for change in edits:
        author.edit(change)
    order = data.draw(st.permutations(author.seen))
    again = data.draw(st.lists(st.sampled_from(author.seen), max_size=3))  # duplicates too
    room = new_room(tmp_path_factory)
    for update in [*order, *again]:
        room.receive(Client(None, "u"), encode_update(update))  # type: ignore[arg-type]
    assert Replica.content(room.doc) == Replica.content(author.doc)
    reloaded = new_room(tmp_path_factory)
    reloaded.load(list(order))  # as from the store's rows
    assert Replica.content(reloaded.doc) == Replica.content(author.doc)


def new_room(tmp_path_factory) -> Room:
    return Room("u/doc", UpdateStore(tmp_path_factory.getbasetemp() / "unused"))  # never opened


@pytest.mark.xfail(strict=True, reason="pycrdt 0.14.13 (yrs): updates applied one at a time out of causal "
                   "order can end wrong; merged first they do not. Strict: tells us when it is fixed.")
@pytest.mark.parametrize("changes", [
    [("set", "k", 0), ("insert", 0, "a"), ("set", "k", 1)],  # ends with no "k" at all
    [("append", 0), ("append", 1), ("insert", 0, "a")],  # ends with [0]: the 1 is lost
])
def test_pycrdt_applies_updates_that_arrive_before_their_predecessors(changes) -> None:
    author = Replica()
    for change in changes:
        author.edit(change)
    first, second, third = author.seen
    assert Replica.content(doc_of(second, third, first)) == Replica.content(author.doc)


sync_prefix = st.sampled_from([b"", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x03"])


@settings(max_examples=400, deadline=None)
@given(prefix=sync_prefix, body=st.binary(max_size=64))
def test_a_room_refuses_garbage_with_protocol_error_and_keeps_its_document(tmp_path_factory, prefix, body) -> None:
    room = new_room(tmp_path_factory)
    room.doc.get("text", type=Text).insert(0, "kept")
    before = room.doc.get_update()
    client = Client(None, "u")  # type: ignore[arg-type]  # a room only queues to its clients
    try:
        room.receive(client, prefix + body)
    except ProtocolError:
        assert room.doc.get_update() == before
    else:  # it parsed: then it was a well-formed message, whatever it did
        parse(prefix + body)
