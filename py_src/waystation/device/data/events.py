"""The event store: a bundle's event tables in SQLite, with retention and relay bookkeeping.

Each declared table `NAME` of bundle `B` is the SQLite table `ev_B_NAME` (the bundle name's
other characters as `_`): `seq` (insertion order), `id` (128-bit random hex), `ts` (epoch
seconds, indexed: time windows are the common query), then the declared fields. A batch is
checked whole before anything is written and inserted in one transaction: all or nothing.

Retention runs in the same transaction as each insert, and before a read once a minute:
rows older than the age limit, and the oldest rows past the row cap, are deleted.

Relay: `_ws_relay` keeps, per table, the highest `seq` the server acknowledged. Rows after
it are pending; the relayable fields of up to `limit` of them form the next batch. Rows that
retention deletes before they were relayed are not relayed.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import DataError
from .query import Query, TableRef
from .schema import EventTable

__all__ = ["EventStore", "RELAY_BYTES", "transaction"]

_PRUNE_EVERY = 60.0  # seconds between retention passes made by reads
RELAY_BYTES = 512 << 10  # JSON per relay batch: half the server's default max_relay_bytes (1 MiB)
_RELAY_SCHEMA = "CREATE TABLE IF NOT EXISTS _ws_relay (tbl TEXT PRIMARY KEY, upto INTEGER NOT NULL)"


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def sql_table(prefix: str, bundle: str, name: str) -> str:
    return f'"{prefix}_{re.sub(r"[^A-Za-z0-9_]", "_", bundle)}_{name}"'


class EventStore:
    """The event tables one bundle declares, over the connection `connect()` gives."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], bundle: str, tables: dict[str, EventTable]) -> None:
        self._connect = connect
        self.bundle = bundle
        self.tables = tables
        # The connection each table was set up on: another (a new account's database) is set up
        # again. Holding the object, not its id, since a closed connection's id can be reused.
        self._ready: dict[str, sqlite3.Connection] = {}
        self._pruned: dict[str, float] = {}

    def table(self, name: str) -> EventTable:
        table = self.tables.get(name)
        if table is None:
            raise DataError(f"bundle {self.bundle!r} declares no event table {name!r}; it declares {sorted(self.tables)}")
        return table

    def query(self, name: str) -> Query:
        table = self.table(name)
        ref = TableRef(self._sql(name), f"event table {name!r}", tuple(table.columns.values()), lambda: self._before_read(name))
        return Query(self._connect, ref)

    def prepare(self, name: str, rows: list[dict[str, Any]], now: float | None = None) -> list[tuple[Any, ...]]:
        """Check every row (DataError naming table, field and row) and return them as stored: (id, ts, *fields)."""
        table = self.table(name)
        now = time.time() if now is None else now
        fields = list(table.fields.values())
        ts_column = table.columns["ts"]
        prepared = []
        for index, row in enumerate(rows):
            where = f"event table {name!r}" + (f", row {index}" if len(rows) > 1 else "")
            if not isinstance(row, dict):
                raise DataError(f"{where}: an event must be an object of fields, got {type(row).__name__}")
            unknown = [k for k in row if k not in table.fields and k != "ts"]
            if unknown:
                raise DataError(f"{where}, field {unknown[0]!r}: not declared; the table's fields are {sorted(table.fields)}")
            ts = ts_column.encode(row.get("ts", now), f"{where}, field 'ts'")
            values = [c.encode(row.get(c.name), f"{where}, field {c.name!r}") for c in fields]
            prepared.append((secrets.token_hex(16), ts, *values))
        return prepared

    def insert(self, name: str, prepared: list[tuple[Any, ...]]) -> list[str]:
        """Store prepared rows in one transaction, with retention; the ids in order."""
        table = self.table(name)
        db = self._connection(name)
        columns = ", ".join(f'"{c}"' for c in table.columns)
        marks = ", ".join("?" * len(table.columns))
        with transaction(db):
            db.executemany(f"INSERT INTO {self._sql(name)} ({columns}) VALUES ({marks})", prepared)
            self._prune(db, table)
        self._pruned[name] = time.monotonic()
        return [row[0] for row in prepared]

    def prune(self, name: str) -> None:
        db = self._connection(name)
        with transaction(db):
            self._prune(db, self.table(name))
        self._pruned[name] = time.monotonic()

    # --- relay ------------------------------------------------------------------------------

    def relay_batch(self, limit: int = 500, max_bytes: int = RELAY_BYTES) -> dict[str, Any] | None:
        """The next events to relay: {"bundle", "events": [{"table", "id", "ts", relayable fields}], "upto": {table: seq},
        "seqs": [each event's seq]}.

        `seqs` lets a client that sends part of the batch (the server refused the whole: it splits
        it) move the relay position past just the part the server took.

        At most `limit` events and about `max_bytes` of JSON (always at least one event): the
        server refuses a batch past its max_relay_bytes, and vectors make events large.
        """
        events: list[dict[str, Any]] = []
        seqs: list[int] = []
        upto: dict[str, int] = {}
        size = 0
        for name, table in self.tables.items():
            if not table.relay or len(events) >= limit or size >= max_bytes:
                continue
            db = self._connection(name)
            done = self._relayed(db, name)
            cols = ["seq", "id", "ts", *table.relay]
            quoted = ", ".join('"' + c + '"' for c in cols)
            rows = db.execute(
                f"SELECT {quoted} FROM {self._sql(name)} "
                "WHERE seq > ? ORDER BY seq LIMIT ?", (done, limit - len(events))).fetchall()
            decoders = [table.columns[c].decode for c in cols[1:]]
            for seq, *values in rows:
                event = {"table": name, **{c: fn(v) for c, fn, v in zip(cols[1:], decoders, values)}}
                size += len(json.dumps(event)) + 2
                if events and size > max_bytes:
                    break
                events.append(event)
                seqs.append(seq)
                upto[name] = seq
        return {"bundle": self.bundle, "events": events, "upto": upto, "seqs": seqs} if events else None

    def mark_relayed(self, upto: dict[str, int]) -> None:
        """Record that the server has every event up to these positions (never moves backwards)."""
        for name, seq in upto.items():
            self.table(name)
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise DataError(f"relay position of {name!r} must be an integer, got {seq!r}")
        db = self._connect()
        db.execute(_RELAY_SCHEMA)
        with transaction(db):
            for name, seq in upto.items():
                db.execute("INSERT INTO _ws_relay VALUES (?, ?) ON CONFLICT (tbl) DO UPDATE SET upto = max(upto, excluded.upto)",
                           (self._sql(name), seq))

    def pending(self, name: str) -> int:
        db = self._connection(name)
        return int(db.execute(f"SELECT COUNT(*) FROM {self._sql(name)} WHERE seq > ?", (self._relayed(db, name),)).fetchone()[0])

    # --- internals --------------------------------------------------------------------------

    def _sql(self, name: str) -> str:
        return sql_table("ev", self.bundle, name)

    def _relayed(self, db: sqlite3.Connection, name: str) -> int:
        db.execute(_RELAY_SCHEMA)
        row = db.execute("SELECT upto FROM _ws_relay WHERE tbl = ?", (self._sql(name),)).fetchone()
        return int(row[0]) if row else 0

    def _connection(self, name: str) -> sqlite3.Connection:
        db = self._connect()
        if self._ready.get(name) is not db:
            self._create(db, self.table(name))
            self._ready[name] = db
        return db

    def _create(self, db: sqlite3.Connection, table: EventTable) -> None:
        """Create the table, or add the fields a newer bundle version declared (older rows have NULL there)."""
        sql = self._sql(table.name)
        fields = ", ".join(f'"{c.name}" {c.sql_type}' for c in table.fields.values())
        columns = f"seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, ts REAL NOT NULL, {fields}"
        db.execute(f"CREATE TABLE IF NOT EXISTS {sql} ({columns})")
        index = sql_table("ix", self.bundle, table.name)
        db.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {sql} (ts)")
        have = {row[1] for row in db.execute(f"PRAGMA table_info({sql})")}
        for col in table.fields.values():
            if col.name not in have:
                db.execute(f'ALTER TABLE {sql} ADD COLUMN "{col.name}" {col.sql_type}')

    def _prune(self, db: sqlite3.Connection, table: EventTable) -> None:
        sql = self._sql(table.name)
        if table.retention_seconds is not None:
            db.execute(f"DELETE FROM {sql} WHERE ts < ?", (time.time() - table.retention_seconds,))
        if table.retention_rows is not None:
            db.execute(f"DELETE FROM {sql} WHERE seq <= (SELECT seq FROM {sql} ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                       (table.retention_rows,))

    def _before_read(self, name: str) -> None:
        table = self.table(name)
        self._connection(name)
        if table.retention_seconds is not None and time.monotonic() - self._pruned.get(name, -_PRUNE_EVERY) >= _PRUNE_EVERY:
            self.prune(name)
