"""The sync store: group commit, durability notices, compaction, on a real database (a SQLite
file, or PostgreSQL with --engine postgresql), and several stores on one database, as several
server instances share it."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Text

from waystation.server.storage import Storage
from waystation.server.sync.compaction import squash
from waystation.server.sync.document import Document
from waystation.server.sync.store import UpdateStore


def history(n: int) -> tuple[Doc[Any], list[bytes]]:
    """A document edited `n` times (appends, then some deletions), and its updates."""
    doc: Doc[Any] = Doc()
    text, items = doc.get("text", type=Text), doc.get("items", type=Array)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        if i % 3 == 2:
            del text[0:1]
        else:
            text.insert(len(text), f"{i},")
            items.append(i)
    return doc, updates


def loaded(updates: list[bytes]) -> tuple[str, list[Any]]:
    """The content of a history, applied as a room loads it (never out of causal order: rows of
    several instances need not be stored in that order)."""
    document = Document.build(updates)
    assert not document.held
    return content(document.doc)


def content(doc: Doc[Any]) -> tuple[str, list[Any]]:
    return str(doc.get("text", type=Text)), doc.get("items", type=Array).to_py() or []


def rows(data: Path, room: str) -> list[bytes]:
    with Storage.at(data).database("sync").transaction() as tx:
        return [bytes(r[0]) for r in tx.execute("SELECT data FROM sync_updates WHERE room = ? ORDER BY id", (room,))]


def test_appends_of_one_moment_commit_as_one_batch_and_load_sees_them(tmp_path: Path, storage_engine: str) -> None:
    path = tmp_path
    doc, updates = history(10)

    async def scenario() -> None:
        store = UpdateStore(path)
        await store.open()
        batches = {store.append("u/a", update) for update in updates[:6]}  # no await between: one batch
        assert len(batches) == 1 and not store.is_durable(*batches)
        await store.durable(*batches)
        assert len(rows(path, "u/a")) == 1  # six updates, merged into one row, committed
        for update in updates[6:]:
            store.append("u/a", update)
        assert loaded(await store.load("u/a")) == content(doc)  # rows plus what is pending
        await store.close()  # commits the rest

    asyncio.run(scenario())
    assert len(rows(path, "u/a")) == 2
    assert loaded(rows(path, "u/a")) == content(doc)
    if storage_engine == "sqlite":
        with sqlite3.connect(path / "sync.sqlite3") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_what_arrives_during_a_commit_is_the_next_batch_and_is_told_when_durable(tmp_path: Path) -> None:
    path = tmp_path
    doc, updates = history(30)

    async def scenario() -> None:
        store = UpdateStore(path)
        await store.open()
        told: list[int] = []
        first = store.append("u/a", updates[0])
        store.when_durable(first, lambda: told.append(first))
        await asyncio.sleep(0)  # the flush has started: the batch is in flight
        later = [store.append("u/a", update) for update in updates[1:]]
        assert set(later) == {first + 1}  # the next batch, not the one in flight
        store.when_durable(first + 1, lambda: told.append(first + 1))
        assert told == []
        await store.durable(first + 1)
        assert told == [first, first + 1] and store.is_durable(first + 1)
        assert len(rows(path, "u/a")) == 2  # one row per batch
        store.when_durable(first, lambda: told.append(0))  # already durable: at once
        assert told[-1] == 0
        await store.close()

    asyncio.run(scenario())
    assert loaded(rows(path, "u/a")) == content(doc)


def test_a_history_that_outweighs_its_squash_is_compacted(tmp_path: Path) -> None:
    """Rows past the first (the last squash) heavier than it and 1 MiB: squashed, however few."""
    path = tmp_path
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(6):
        text.insert(len(text), str(i) * (400 << 10))

    async def scenario() -> None:
        store = UpdateStore(path)  # compact_after 500: rows alone would never trigger it
        await store.open()
        for update in updates:
            store.append("u/big", update)
            await store.flush()
        await store.close()

    asyncio.run(scenario())
    stored = rows(path, "u/big")
    assert len(stored) < 4
    assert loaded(stored)[0] == str(text)


def test_compaction_keeps_the_document_and_shrinks_the_rows(tmp_path: Path) -> None:
    path = tmp_path
    doc, updates = history(600)

    async def scenario() -> None:
        store = UpdateStore(path, compact_after=50)
        await store.open()
        for update in updates:  # one flush per update: the worst case for the row count
            store.append("u/big", update)
            await store.flush()
        store.append("u/other", updates[0])
        await store.close()

    asyncio.run(scenario())
    stored = rows(path, "u/big")
    assert len(stored) <= 50  # squashed each time it passed 50 rows, instead of 600 rows
    assert loaded(stored) == content(doc)
    # the squashed row is as small as the document's own encoding; after it, at most 49 updates
    assert sum(map(len, stored)) <= len(doc.get_update()) + sum(map(len, updates[-49:]))
    assert loaded(rows(path, "u/other")) == loaded(updates[:1])  # other rooms untouched


def test_compact_squashes_to_one_row_now(tmp_path: Path) -> None:
    path = tmp_path
    doc, updates = history(40)

    async def scenario() -> None:
        store = UpdateStore(path)
        await store.open()
        for update in updates:
            store.append("u/a", update)
            await store.flush()
        assert await store.row_count("u/a") == len(updates)
        await store.compact("u/a")
        assert await store.row_count("u/a") == 1
        await store.close()

    asyncio.run(scenario())
    assert loaded(rows(path, "u/a")) == content(doc)


def test_a_load_racing_a_flush_misses_nothing(tmp_path: Path) -> None:
    path = tmp_path
    doc, updates = history(200)

    async def scenario() -> None:
        store = UpdateStore(path)
        await store.open()
        for i, update in enumerate(updates):
            store.append("u/a", update)
            if i % 7 == 0:
                flush = asyncio.create_task(store.flush())
                assert loaded(await store.load("u/a")) == loaded(updates[: i + 1])
                await flush
        await store.close()

    asyncio.run(scenario())
    assert loaded(rows(path, "u/a")) == content(doc)


# --- several instances on one database ---

ROOM = "u/shared"


def appends(client: int, n: int) -> list[bytes]:
    """`n` updates of client `client`, each appending `client:i` to the shared array and text."""
    doc: Doc[Any] = Doc(client_id=client)
    text, items = doc.get("text", type=Text), doc.get("items", type=Array)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        with doc.transaction():
            text.insert(len(text), f"{client}:{i},")
            items.append(f"{client}:{i}")
    return updates


def instance(data: Path, **options: Any) -> UpdateStore:
    """A store of its own on `data`'s database, as another server instance would have."""
    return UpdateStore(Storage(data, Storage.at(data).url), **options)


async def stored(data: Path) -> list[bytes]:
    store = instance(data)
    await store.open()
    try:
        return await store.load(ROOM)
    finally:
        await store.close()


def assert_each_row_adds_something(found: list[bytes]) -> None:
    """Every update is in one row only: leaving any row out changes the document's state (a
    CRDT applies an update twice as once, so repeated rows would not show in its content)."""
    def state(updates: list[bytes]) -> bytes:
        return Document.build(updates).doc.get_state()

    whole = state(found)
    for i in range(len(found)):
        assert state(found[:i] + found[i + 1:]) != whole, f"row {i} of {len(found)} repeats others"


def test_two_instances_writing_and_compacting_one_room_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """Two stores on one database, each writing another client's edits to one room, update by
    update, and squashing it as it grows (each sees its own writes only): a fresh store loads
    every edit."""
    ours, theirs = appends(1, 150), appends(2, 150)

    async def scenario() -> None:
        a, b = instance(tmp_path, compact_after=6), instance(tmp_path, compact_after=6)
        await asyncio.gather(a.open(), b.open())

        async def write(store: UpdateStore, updates: list[bytes]) -> None:
            for update in updates:
                store.append(ROOM, update)
                await store.flush()

        await asyncio.gather(write(a, ours), write(b, theirs))
        await asyncio.gather(a.close(), b.close())

    asyncio.run(scenario())
    found = asyncio.run(stored(tmp_path))
    expected: Doc[Any] = Doc()
    for update in ours + theirs:
        expected.apply_update(update)
    got = loaded(found)
    assert got == content(expected)
    assert len(got[1]) == 300 and set(got[1]) == {f"{c}:{i}" for c in (1, 2) for i in range(150)}
    assert len(found) < 150  # compacted as it went
    assert_each_row_adds_something(found)


def test_a_squash_of_rows_another_instance_squashed_meanwhile_is_dropped(tmp_path: Path) -> None:
    """Instance A reads a room's rows to squash them; B, meanwhile, writes more and squashes
    them all. A's squash would store their content a second time: it is dropped."""
    updates = appends(1, 14)

    async def scenario() -> None:
        a, b = instance(tmp_path), instance(tmp_path)
        await asyncio.gather(a.open(), b.open())
        for update in updates[:10]:
            a.append(ROOM, update)
            await a.flush()
        read = await a._run(a._select_for_compaction, ROOM)  # A's squash starts: the rows it read
        for update in updates[10:]:
            b.append(ROOM, update)
            await b.flush()
        await b.compact(ROOM)
        replaced, again = await a._run(a._replace, ROOM, read, squash([data for _, data in read]))
        assert not replaced and not again
        assert await a.row_count(ROOM) == 1  # B's squash alone
        await asyncio.gather(a.close(), b.close())

    asyncio.run(scenario())
    found = asyncio.run(stored(tmp_path))
    assert loaded(found) == loaded(updates) and len(found) == 1


def test_a_row_that_commits_while_a_squash_is_made_is_kept(tmp_path: Path, storage_engine: str) -> None:
    """On PostgreSQL a row takes its id when inserted and may commit after rows with higher ids:
    a squash that read past it must not delete it when it has committed meanwhile."""
    if storage_engine != "postgresql":
        pytest.skip("SQLite gives ids in commit order: one writer at a time")
    ours, late = appends(1, 10), appends(2, 1)[0]

    async def scenario() -> None:
        a = instance(tmp_path)
        await a.open()
        with ExitStack() as held:  # another instance's batch, its id taken, not yet committed
            other = held.enter_context(Storage(tmp_path, Storage.at(tmp_path).url).database("sync").transaction())
            other.execute("INSERT INTO sync_updates (room, data) VALUES (?, ?)", (ROOM, late))
            for update in ours:
                a.append(ROOM, update)
                await a.flush()
            read = await a._run(a._select_for_compaction, ROOM)
            assert len(read) == len(ours)  # not the uncommitted row, whose id is lower
        replaced, _ = await a._run(a._replace, ROOM, read, squash([data for _, data in read]))
        assert replaced
        assert await a.row_count(ROOM) == 2  # the squash, and the row that committed meanwhile
        await a.close()

    asyncio.run(scenario())
    found = asyncio.run(stored(tmp_path))
    assert loaded(found) == loaded([*ours, late])
    assert "2:0" in loaded(found)[1]
