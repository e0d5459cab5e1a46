"""Document updates in SQLite, written behind: merged in memory, flushed in batches.

    data/sync.sqlite3   table sync_updates (id, room, data): each room's history of updates

`append` only buffers; a flush every `flush_interval` seconds (and on `flush()`, which rooms
call when they close, and on `close()`, which the app's shutdown calls) merges each room's
buffered updates into one and writes them in one transaction. Writing each update as it came
cost ~2.45 ms apiece and lost most of a burst on SIGTERM (shared/DESIGN.md).

When a room's history passes `compact_after` rows it is squashed into one row that holds
the same document (`compaction.squash`), in the same transaction that deletes the rows it
replaced. Unbounded stores are a known pain of CRDT servers (jupyter-collaboration #430).

Every SQLite call runs on one worker thread, in submission order, so a `load` sees each
flush submitted before it, and the buffer it copies at submission holds everything later.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pycrdt import merge_updates

from .compaction import squash

__all__ = ["UpdateStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_updates_by_room ON sync_updates (room, id);
"""


class UpdateStore:
    """The history of every room's document, in `path` (SQLite, WAL)."""

    def __init__(self, path: Path, *, flush_interval: float = 0.5, compact_after: int = 500) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.compact_after = compact_after
        self._pending: dict[str, list[bytes]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-store")
        self._db: sqlite3.Connection | None = None  # owned by the worker thread
        self._flusher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._run(self._connect)
        self._flusher = asyncio.create_task(self._flush_every_interval(), name="sync-store-flush")

    async def close(self) -> None:
        """Stop the timer, write everything buffered, close the database."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        await self.flush()
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)

    def append(self, room: str, update: bytes) -> None:
        """Buffer an update that the room's document has applied; written by the next flush."""
        self._pending.setdefault(room, []).append(update)

    async def load(self, room: str) -> list[bytes]:
        """Every update of `room`: the stored ones, then those still buffered."""
        buffered = list(self._pending.get(room, ()))
        return await self._run(self._select, room) + buffered

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self._run(self._write, batch)
        except Exception:
            log.exception("sync store: writing %d rooms failed; keeping them buffered", len(batch))
            for room, updates in batch.items():
                self._pending[room] = updates + self._pending.get(room, [])
            raise

    async def compact(self, room: str) -> None:
        """Squash the stored history of `room` into one row now."""
        await self._run(self._compact, room)

    async def row_count(self, room: str) -> int:
        return await self._run(lambda: self._conn().execute(
            "SELECT count(*) FROM sync_updates WHERE room = ?", (room,)).fetchone()[0])

    async def _flush_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                pass  # logged by flush; retried next time

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- on the worker thread ---

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("UpdateStore is not open: call `await store.open()` first")
        return self._db

    def _select(self, room: str) -> list[bytes]:
        rows = self._conn().execute("SELECT data FROM sync_updates WHERE room = ? ORDER BY id", (room,))
        return [bytes(data) for (data,) in rows]

    def _write(self, batch: dict[str, list[bytes]]) -> None:
        db = self._conn()
        with _transaction(db):
            for room, updates in batch.items():
                db.executemany("INSERT INTO sync_updates (room, data) VALUES (?, ?)",
                               [(room, update) for update in _merged_or_each(updates)])
        for room in batch:
            count = db.execute("SELECT count(*) FROM sync_updates WHERE room = ?", (room,)).fetchone()[0]
            if count > self.compact_after:
                try:
                    self._compact(room)
                except Exception:  # the rows are written; compaction retries after the next write
                    log.exception("sync store: compacting %s failed", room)

    def _compact(self, room: str) -> None:
        db = self._conn()
        with _transaction(db):
            rows = db.execute("SELECT id, data FROM sync_updates WHERE room = ? ORDER BY id", (room,)).fetchall()
            if len(rows) < 2:
                return
            merged = squash([bytes(data) for _, data in rows])
            db.execute("DELETE FROM sync_updates WHERE room = ? AND id <= ?", (room, rows[-1][0]))
            db.execute("INSERT INTO sync_updates (room, data) VALUES (?, ?)", (room, merged))
        log.info("sync store: compacted %s from %d rows to 1", room, len(rows))


def _merged(updates: list[bytes]) -> bytes:
    return updates[0] if len(updates) == 1 else merge_updates(*updates)


def _merged_or_each(updates: list[bytes]) -> list[bytes]:
    try:
        return [_merged(updates)]
    except ValueError:  # cannot happen for updates a Doc applied; never drop them if it does
        log.warning("sync store: could not merge %d updates; storing them one by one", len(updates))
        return updates


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
