"""Document updates in SQLite, committed in groups; nothing that reveals an update leaves the
server before the transaction that holds it has committed.

    data/sync.sqlite3   table sync_updates (id, room, data): each room's history of updates

Group commit: `append` adds an update to the batch being collected and returns that batch's
number; a flush starts as soon as something is pending and no flush is in flight, and what
arrives meanwhile forms the next batch. Each batch is one transaction, each room's updates in
it merged into one row. `durable(batch)` waits until that batch has committed: rooms hold back
every message that reveals an update (its broadcast, a sync step 2 sent after it came) until
then, so an edit a client can see acknowledged is on disk. Writing each update as it came cost
~2.45 ms apiece; a batch costs one commit whatever its size.

Durability: WAL with synchronous=NORMAL survives the process being killed (SIGKILL included:
the commit is in the WAL file, in the OS's cache), not a power cut or an OS crash, which can
lose the last transactions before a checkpoint. synchronous=FULL (`durable_sync=True`) fsyncs
every commit and survives those too, at the cost of one fsync per batch.

When a room's history passes `compact_after` rows, or its rows after the first (the last
squash) outweigh it and 1 MiB, it is squashed into one row holding the same document
(`compaction.squash`), in the transaction that deletes the rows it replaced: a room then loads
from one encoding of the document plus a short tail, in time linear in the document.

Every SQLite call runs on one worker thread, in submission order, so a `load` sees each batch
submitted before it, and the buffer it copies at submission holds everything later.
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
_RETRY_SECONDS = 1.0  # after a failed write (disk full, locked): the batch stays pending
_TAIL_SLACK = 1 << 20  # bytes of history past the last squash before its size alone compacts


class UpdateStore:
    """The history of every room's document, in `path` (SQLite, WAL)."""

    def __init__(self, path: Path, *, compact_after: int = 500, durable_sync: bool = False) -> None:
        self.path = path
        self.compact_after = compact_after
        self.durable_sync = durable_sync
        self.committed = 0  # every batch numbered up to this one is on disk
        self._batch = 1  # the number of the batch being collected
        self._pending: dict[str, list[bytes]] = {}
        self._commits: dict[int, asyncio.Future[None]] = {}
        self._callbacks: dict[int, list[Callable[[], None]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._compacting: dict[str, asyncio.Task[None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-store")
        self._db: sqlite3.Connection | None = None  # owned by the worker thread
        self._history: dict[str, _History] = {}  # owned by the worker thread

    async def open(self) -> None:
        await self._run(self._connect)

    async def close(self) -> None:
        """Write everything pending, close the database."""
        try:
            await self.flush()
            await asyncio.gather(*self._compacting.values(), return_exceptions=True)
        finally:
            await self._run(self._disconnect)
            self._executor.shutdown(wait=True)

    def append(self, room: str, update: bytes) -> int:
        """Add an update that the room has taken to the next batch; the batch's number, for `durable`."""
        self._pending.setdefault(room, []).append(update)
        if self._flusher is None and _has_running_loop():  # without one (a tool, a test) `flush` writes
            self._flusher = asyncio.get_running_loop().create_task(self._flush_batches(), name="sync-store-flush")
        return self._batch

    def is_durable(self, batch: int) -> bool:
        return batch <= self.committed

    def when_durable(self, batch: int, callback: Callable[[], None]) -> None:
        """Call `callback` (on the event loop) once batch `batch` has committed: now if it has."""
        if batch <= self.committed:
            callback()
        else:
            self._callbacks.setdefault(batch, []).append(callback)

    async def durable(self, batch: int) -> None:
        """Return once batch `batch` (from `append`) has committed."""
        if batch > self.committed:
            future = self._commits.get(batch)
            if future is None:
                future = self._commits[batch] = asyncio.get_running_loop().create_future()
            await asyncio.shield(future)

    async def flush(self) -> None:
        """Return once everything appended so far has committed (raises if a write fails)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._pending:  # the last flush gave up on a failure: try once more, and say so
            await self._write_batch()

    async def load(self, room: str) -> list[bytes]:
        """Every update of `room`: the stored ones, then those pending (a batch in flight is
        written before this reads: one worker thread, in submission order)."""
        buffered = list(self._pending.get(room, ()))
        return await self._run(self._select, room) + buffered

    async def compact(self, room: str) -> bool:
        """Squash the stored history of `room` into one row now. The squash (O(document), and
        pycrdt holds the GIL for parts of it) runs on a thread of its own, so that commits go on
        meanwhile; rows written since it read them stay, after the squashed one. True if those
        rows want compacting again."""
        rows = await self._run(self._select_with_ids, room)
        if len(rows) < 2:
            return False
        squashed = await asyncio.to_thread(squash, [data for _, data in rows])
        again = await self._run(self._replace, room, rows[-1][0], squashed)
        log.info("sync store: compacted %s from %d rows to 1", room, len(rows))
        return again

    async def row_count(self, room: str) -> int:
        return await self._run(lambda: self._conn().execute(
            "SELECT count(*) FROM sync_updates WHERE room = ?", (room,)).fetchone()[0])

    async def documents_of(self, user: str) -> set[str]:
        """The rooms of `user` (`USER/...`) that have a stored or pending update."""
        prefix = f"{user}/"
        pending = {room for room in self._pending if room.startswith(prefix)}
        return pending | await self._run(self._rooms_with_prefix, prefix)

    async def _flush_batches(self) -> None:
        try:
            while self._pending:
                try:
                    await self._write_batch()
                except Exception:
                    await asyncio.sleep(_RETRY_SECONDS)  # logged; the batch is pending again
        finally:
            self._flusher = None

    async def _write_batch(self) -> None:
        batch, number = self._pending, self._batch
        self._pending, self._batch = {}, number + 1
        try:
            to_compact = await self._run(self._write, batch)
        except Exception:
            log.exception("sync store: writing %d rooms failed; keeping them pending", len(batch))
            for room, updates in batch.items():
                self._pending[room] = updates + self._pending.get(room, [])
            raise  # what came meanwhile joins the retried batch, numbered as the newest of them
        self.committed = number
        for done in [n for n in self._commits if n <= number]:
            self._commits.pop(done).set_result(None)
        for done in sorted(n for n in self._callbacks if n <= number):
            for callback in self._callbacks.pop(done):
                try:
                    callback()
                except Exception:
                    log.exception("sync store: a commit callback failed")
        for room in to_compact:
            if room not in self._compacting:  # in the background: commits never wait for a squash
                self._compacting[room] = asyncio.create_task(self._compact_logged(room), name=f"sync-compact {room}")

    async def _compact_logged(self, room: str) -> None:
        try:
            # Commits that came during a squash were not compacted by it: squash again if they
            # would have asked for it (a room written faster than it squashes grows no tail).
            while await self.compact(room):
                pass
        except Exception:  # the rows are written; compaction retries after the next write
            log.exception("sync store: compacting %s failed", room)
        finally:
            del self._compacting[room]

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- on the worker thread ---

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durable_sync else 'NORMAL'}")
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

    def _rooms_with_prefix(self, prefix: str) -> set[str]:
        rows = self._conn().execute("SELECT DISTINCT room FROM sync_updates WHERE room >= ? AND room < ?",
                                    (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)))
        return {room for (room,) in rows}

    def _write(self, batch: dict[str, list[bytes]]) -> list[str]:
        """Commit `batch`; the rooms whose history now wants compacting."""
        db = self._conn()
        written = {room: _merged_or_each(updates) for room, updates in batch.items()}
        with _transaction(db):
            for room, rows in written.items():
                db.executemany("INSERT INTO sync_updates (room, data) VALUES (?, ?)", [(room, row) for row in rows])
        for room, rows in written.items():
            self._history_of(room, rows).add(rows)
        return [room for room in batch if self._history[room].wants_compaction(self.compact_after)]

    def _history_of(self, room: str, just_written: list[bytes]) -> _History:
        """The shape of `room`'s stored history (kept here: asking SQLite per commit is O(rows))."""
        if room not in self._history:
            self._history[room] = _History.of(self._conn(), room)
            self._history[room].remove(just_written)  # counted by the query; `add` counts them again
        return self._history[room]

    def _select_with_ids(self, room: str) -> list[tuple[int, bytes]]:
        rows = self._conn().execute("SELECT id, data FROM sync_updates WHERE room = ? ORDER BY id", (room,))
        return [(id, bytes(data)) for id, data in rows]

    def _replace(self, room: str, last: int, squashed: bytes) -> bool:
        """Rows of `room` up to id `last` become one row, `squashed`, in their place (id `last`);
        True if the rows written since then want compacting already."""
        db = self._conn()
        with _transaction(db):
            db.execute("DELETE FROM sync_updates WHERE room = ? AND id <= ?", (room, last))
            db.execute("INSERT INTO sync_updates (id, room, data) VALUES (?, ?, ?)", (last, room, squashed))
        self._history[room] = _History.of(db, room)
        return self._history[room].wants_compaction(self.compact_after)


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _merged(updates: list[bytes]) -> bytes:
    return updates[0] if len(updates) == 1 else merge_updates(*updates)


def _merged_or_each(updates: list[bytes]) -> list[bytes]:
    try:
        return [_merged(updates)]
    except ValueError:  # cannot happen for updates a Doc applied; never drop them if it does
        log.warning("sync store: could not merge %d updates; storing them one by one", len(updates))
        return updates


class _History:
    """How many rows a room's stored history has, their bytes, and the first row's (the last squash)."""

    def __init__(self, count: int, total: int, first: int) -> None:
        self.count, self.total, self.first = count, total, first

    @classmethod
    def of(cls, db: sqlite3.Connection, room: str) -> _History:
        count, total, first = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0), coalesce((SELECT length(data) FROM sync_updates"
            " WHERE room = ?1 ORDER BY id LIMIT 1), 0) FROM sync_updates WHERE room = ?1", (room,)).fetchone()
        return cls(count, total, first)

    def add(self, rows: list[bytes]) -> None:
        if self.count == 0 and rows:
            self.first = len(rows[0])
        self.count += len(rows)
        self.total += sum(map(len, rows))

    def remove(self, rows: list[bytes]) -> None:
        self.count -= len(rows)
        self.total -= sum(map(len, rows))
        if self.count == 0:
            self.first = 0

    def wants_compaction(self, compact_after: int) -> bool:
        tail = self.total - self.first
        return self.count > compact_after or (self.count > 1 and tail > max(self.first, _TAIL_SLACK))


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
