"""The sync store: group commit, durability notices, compaction, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Text

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
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("text", type=Text)), doc.get("items", type=Array).to_py() or []


def content(doc: Doc[Any]) -> tuple[str, list[Any]]:
    return str(doc.get("text", type=Text)), doc.get("items", type=Array).to_py() or []


def rows(path: Path, room: str) -> list[bytes]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT data FROM sync_updates WHERE room = ? ORDER BY id", (room,))]


def test_appends_of_one_moment_commit_as_one_batch_and_load_sees_them(tmp_path: Path) -> None:
    path = tmp_path / "sync.sqlite3"
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
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_what_arrives_during_a_commit_is_the_next_batch_and_is_told_when_durable(tmp_path: Path) -> None:
    path = tmp_path / "sync.sqlite3"
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
    path = tmp_path / "sync.sqlite3"
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
    path = tmp_path / "sync.sqlite3"
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
    path = tmp_path / "sync.sqlite3"
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
    path = tmp_path / "sync.sqlite3"
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
