"""Document updates in the store "sync" (data/sync.sqlite3, or the PostgreSQL database every
instance shares), committed in groups; nothing that reveals an update leaves the server before
the transaction that holds it has committed.

    table sync_updates (id, room, data): each room's history of updates

Group commit: `append` adds an update to the batch being collected and returns that batch's
number; a flush starts as soon as something is pending and no flush is in flight, and what
arrives meanwhile forms the next batch. Each batch is one transaction, each room's updates in
it merged into one row. `durable(batch)` waits until that batch has committed: rooms hold back
every message that reveals an update (its broadcast, a sync step 2 sent after it came) until
then, so an edit a client can see acknowledged is on disk. Writing each update as it came cost
~2.45 ms apiece; a batch costs one commit whatever its size.

Durability on SQLite: WAL with synchronous=NORMAL survives the process being killed (SIGKILL
included: the commit is in the WAL file, in the OS's cache), not a power cut or an OS crash,
which can lose the last transactions before a checkpoint. synchronous=FULL (`durable_sync=True`)
fsyncs every commit and survives those too, at the cost of one fsync per batch. On PostgreSQL a
commit is as durable as the server's own settings make it (`synchronous_commit`).

When a room's history passes `compact_after` rows, or its rows after the first (the last
squash) outweigh it and 1 MiB, it is squashed into one row holding the same document
(`compaction.squash`), in the transaction that deletes the rows it replaced: a room then loads
from one encoding of the document plus a short tail, in time linear in the document.

Several instances may write and compact one room at once (on PostgreSQL, or processes sharing
a SQLite file), so a squash deletes exactly the rows it read, checked unchanged, under a lock
per room (a PostgreSQL advisory lock, SQLite's write lock), and takes the last one's id. A row
it did not read stays, whatever its id: PostgreSQL hands out ids when a row is inserted, not
when it commits, so a row with a smaller id can commit after a squash read past it (being a
CRDT update, it applies the same before or after the squash). If another instance squashed
some of those rows meanwhile, this squash is dropped and the room read again, rather than
storing their content twice. An instance counts only its own writes towards the trigger, so
it reads a room's counts again every `compact_after // 4` rows it writes there and at every
compaction.

Every database call runs on one worker thread, in submission order, so a `load` sees each
batch submitted before it, and the buffer it copies at submission holds everything later. On
SQLite that thread keeps one connection open.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pycrdt import merge_updates

from ..storage import Connection, Database, Storage
from .compaction import squash
from .schema import MIGRATIONS, STORE

__all__ = ["UpdateStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY_SECONDS = 1.0  # after a failed write (disk full, locked, database down): the batch stays pending
_TAIL_SLACK = 1 << 20  # bytes of history past the last squash before its size alone compacts
_ROOM_LOCK = 0x7379_6E63  # the class of PostgreSQL advisory locks that serialise squashes, one per room


class UpdateStore:
    """The history of every room's document, in the store "sync" of `data` (a folder, or a Storage)."""

    def __init__(self, data: str | Path | Storage, *, compact_after: int = 500, durable_sync: bool = False) -> None:
        self.storage = Storage.at(data)
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
        self._db: Database | None = None  # used on the worker thread only
        self._history: dict[str, _History] = {}  # owned by the worker thread

    async def open(self) -> None:
        await self._run(self._connect)

    async def close(self) -> None:
        """Write everything pending, let go of the database."""
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

    async def compact(self, room: str, *, if_due: bool = False) -> bool:
        """Squash the stored history of `room` into one row now (`if_due`: only if the rows,
        read now, want it: another instance may have squashed them already). The squash
        (O(document), and pycrdt holds the GIL for parts of it) runs on a thread of its own,
        so that commits go on meanwhile; rows written since it read them stay, beside the
        squashed one. True if the room's rows want compacting again."""
        rows = await self._run(self._select_for_compaction, room)
        if len(rows) < 2 or (if_due and not _History.of_rows(rows).wants_compaction(self.compact_after)):
            return False
        squashed = await asyncio.to_thread(squash, [data for _, data in rows])
        replaced, again = await self._run(self._replace, room, rows, squashed)
        if replaced:
            log.info("sync store: compacted %s from %d rows to 1", room, len(rows))
        else:
            log.info("sync store: rows of %s were squashed elsewhere meanwhile; dropped this squash", room)
        return again

    async def row_count(self, room: str) -> int:
        return await self._run(self._row_count, room)

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
            while await self.compact(room, if_due=True):
                pass
        except Exception:  # the rows are written; compaction retries after the next write
            log.exception("sync store: compacting %s failed", room)
        finally:
            del self._compacting[room]

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- on the worker thread ---

    def _connect(self) -> None:
        # dedicated: every call runs on this one thread, which keeps its connection open (SQLite's, or
        # PostgreSQL's outside the pool)
        self._db = self.storage.database(STORE, MIGRATIONS, synchronous="FULL" if self.durable_sync else "NORMAL",
                                         dedicated=True, timeout=5.0)

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()  # SQLite: this thread's connection, now; PostgreSQL: the process's pool stays

    def _database(self) -> Database:
        if self._db is None:
            raise RuntimeError("UpdateStore is not open: call `await store.open()` first")
        return self._db

    def _select(self, room: str) -> list[bytes]:
        with self._database().transaction() as tx:
            rows = tx.execute("SELECT data FROM sync_updates WHERE room = ? ORDER BY id", (room,)).fetchall()
        return [bytes(data) for (data,) in rows]

    def _row_count(self, room: str) -> int:
        with self._database().transaction() as tx:
            (count,) = tx.execute("SELECT count(*) FROM sync_updates WHERE room = ?", (room,)).fetchone()
        return int(count)

    def _rooms_with_prefix(self, prefix: str) -> set[str]:
        with self._database().transaction() as tx:
            rows = tx.execute("SELECT DISTINCT room FROM sync_updates WHERE room >= ? AND room < ?",
                              (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))).fetchall()
        return {str(room) for (room,) in rows}

    def _write(self, batch: dict[str, list[bytes]]) -> list[str]:
        """Commit `batch`; the rooms whose history now wants compacting."""
        written = {room: _merged_or_each(updates) for room, updates in batch.items()}
        counted: dict[str, _History] = {}
        with self._database().transaction(immediate=True) as tx:
            tx.executemany("INSERT INTO sync_updates (room, data) VALUES (?, ?)",
                           [(room, row) for room, rows in written.items() for row in rows])
            for room in written:  # counted here, with this batch: a failure leaves it pending whole
                history = self._history.get(room)
                if history is None or history.unread >= max(1, self.compact_after // 4):
                    counted[room] = _History.of(tx, room)  # other instances' rows too
        for room, rows in written.items():
            if room in counted:
                self._history[room] = counted[room]
            else:
                self._history[room].add(rows)
        return [room for room in batch if self._history[room].wants_compaction(self.compact_after)]

    def _select_for_compaction(self, room: str) -> list[tuple[int, bytes]]:
        """Every row of `room` with its id; the room's counts are these rows' from now on."""
        with self._database().transaction() as tx:
            rows = [(int(id), bytes(data)) for id, data in
                    tx.execute("SELECT id, data FROM sync_updates WHERE room = ? ORDER BY id", (room,))]
        self._history[room] = _History.of_rows(rows)
        return rows

    def _replace(self, room: str, rows: list[tuple[int, bytes]], squashed: bytes) -> tuple[bool, bool]:
        """Rows `rows` of `room` become one row, `squashed`, with the last one's id, if every
        one is still there as read; else nothing changes. Whether it replaced them, and whether
        the room's rows (read again) want compacting already."""
        db = self._database()
        try:
            with db.transaction(immediate=True) as tx:  # SQLite: the write lock, held to the end
                if tx.engine == "postgresql":
                    tx.execute(f"SELECT pg_advisory_xact_lock({_ROOM_LOCK}, hashtext(?))", (room,))
                    # by digest: no second transfer of the document to the database
                    deleted = tx.executemany(
                        "DELETE FROM sync_updates WHERE id = ? AND room = ? AND sha256(data) = ?",
                        [(id, room, hashlib.sha256(data).digest()) for id, data in rows]).rowcount
                else:
                    deleted = tx.executemany("DELETE FROM sync_updates WHERE id = ? AND room = ? AND data = ?",
                                             [(id, room, data) for id, data in rows]).rowcount
                if deleted != len(rows):
                    raise _Changed  # squashed elsewhere meanwhile: this squash would repeat their content
                tx.execute("INSERT INTO sync_updates (id, room, data) VALUES (?, ?, ?)", (rows[-1][0], room, squashed))
                history = _History.of(tx, room)
            replaced = True
        except _Changed:
            with db.transaction() as tx:
                history = _History.of(tx, room)
            replaced = False
        self._history[room] = history
        return replaced, history.wants_compaction(self.compact_after)


class _Changed(Exception):
    """Rows a squash read are no longer there as it read them."""


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
    """How many rows a room's stored history has, their bytes, and the first row's (the last
    squash); `unread`: rows this instance added to the counts since it last read them."""

    def __init__(self, count: int, total: int, first: int) -> None:
        self.count, self.total, self.first = count, total, first
        self.unread = 0

    @classmethod
    def of(cls, tx: Connection, room: str) -> _History:
        count, total, first = tx.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0), coalesce((SELECT length(data) FROM sync_updates"
            " WHERE room = ? ORDER BY id LIMIT 1), 0) FROM sync_updates WHERE room = ?", (room, room)).fetchone()
        return cls(int(count), int(total), int(first))

    @classmethod
    def of_rows(cls, rows: list[tuple[int, bytes]]) -> _History:
        return cls(len(rows), sum(len(data) for _, data in rows), len(rows[0][1]) if rows else 0)

    def add(self, rows: list[bytes]) -> None:
        if self.count == 0 and rows:
            self.first = len(rows[0])
        self.count += len(rows)
        self.total += sum(map(len, rows))
        self.unread += len(rows)

    def wants_compaction(self, compact_after: int) -> bool:
        tail = self.total - self.first
        return self.count > compact_after or (self.count > 1 and tail > max(self.first, _TAIL_SLACK))
