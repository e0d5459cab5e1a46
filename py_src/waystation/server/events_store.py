"""Relayed events under --data (`events.sqlite3`, or the `events` table of the PostgreSQL database):
each stored once, exported as JSON lines or CSV.

    store = EventLog(Path("data"))
    store.add("demo", "alice", [{"table": "clicks", "id": "9f...", "ts": 1767225600.5, "item_id": "a1"}])
    for line in store.export("clicks", bundle="demo", since=0, fmt="jsonl"): ...

An event's identity is (bundle, table, id): a device that sends a batch again (it never
heard the answer) stores nothing twice (ON CONFLICT DO NOTHING on that primary key), whichever
server instance each copy reaches.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .storage import Migration, Storage

__all__ = ["EVENTS_FILE", "EventLog", "MIGRATIONS"]

EVENTS_FILE = "events.sqlite3"
# `user` is a reserved word of PostgreSQL (unquoted it reads the session's user): quoted everywhere.
MIGRATIONS = (
    Migration(1, sqlite="""
CREATE TABLE IF NOT EXISTS events (
    bundle TEXT NOT NULL, tbl TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL,
    "user" TEXT NOT NULL, received_at REAL NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (bundle, tbl, id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (tbl, ts);
""", postgresql="""
CREATE TABLE IF NOT EXISTS events (
    bundle TEXT NOT NULL, tbl TEXT NOT NULL, id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
    "user" TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (bundle, tbl, id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (tbl, ts);
"""),
)
_HEAD = ("bundle", "table", "id", "ts", "user")
_BATCH = 1000  # events an export reads at a time


class EventLog:
    """The relayed events of one data folder. Blocking: call from a thread pool on the server."""

    def __init__(self, data: str | Path | Storage) -> None:
        self.storage = Storage.at(data)
        self.db = self.storage.database("events", MIGRATIONS)

    def add(self, bundle: str, user: str, events: list[dict[str, Any]]) -> dict[str, int]:
        """Store the events (already checked) in one transaction; {"stored": new, "duplicates": seen before}."""
        now = time.time()
        rows = []
        for event in events:
            fields = {k: v for k, v in event.items() if k not in ("table", "id", "ts")}
            rows.append((bundle, event["table"], event["id"], float(event["ts"]), user, now,
                         json.dumps(fields, separators=(",", ":"), ensure_ascii=False)))
        if not rows:
            return {"stored": 0, "duplicates": 0}
        with self.db.transaction() as tx:
            stored = tx.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                    rows).rowcount
        return {"stored": stored, "duplicates": len(rows) - stored}

    def count(self, table: str, bundle: str | None = None) -> int:
        sql, params = _filter(table, bundle, None)
        with self.db.transaction() as tx:
            return int(tx.execute(f"SELECT COUNT(*) FROM events WHERE {sql}", params).fetchone()[0])

    def rows(self, table: str, bundle: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """The events of `table` (of `bundle`, at or after `since`), oldest first."""
        return list(self.iter_rows(table, bundle, since))

    def iter_rows(self, table: str, bundle: str | None = None, since: float | None = None) -> Iterator[dict[str, Any]]:
        """The same, read as they are written out: an export holds a batch of events in memory, not all of them.

        Read in batches by the order's key (ts, id, bundle), each batch a short transaction of its own: a
        long export holds no connection of the pool, nor a snapshot, between batches. Events are never
        changed once stored, so the batches add up to the events stored when each was read."""
        sql, params = _filter(table, bundle, since)
        query = f'SELECT bundle, tbl, id, ts, "user", data FROM events WHERE {sql}'
        after: tuple[float, str, str] | None = None
        while True:
            with self.db.transaction() as tx:
                if after is None:
                    found = tx.execute(f"{query} ORDER BY ts, id, bundle LIMIT {_BATCH}", params).fetchall()
                else:
                    # ts >= ? alone lets the (tbl, ts) index find the start; the rest is exact.
                    found = tx.execute(
                        f"{query} AND ts >= ? AND (ts > ? OR (ts = ? AND (id > ? OR (id = ? AND bundle > ?)))) "
                        f"ORDER BY ts, id, bundle LIMIT {_BATCH}",
                        [*params, after[0], after[0], after[0], after[1], after[1], after[2]]).fetchall()
            for row in found:
                yield {**dict(zip(_HEAD, row[:5])), **json.loads(row[5])}
            if len(found) < _BATCH:
                return
            last = found[-1]
            after = (last[3], last[2], last[0])

    def field_names(self, table: str, bundle: str | None = None, since: float | None = None) -> list[str]:
        """Every relayed field name among these events, sorted (read by the database from the JSON)."""
        sql, params = _filter(table, bundle, since)
        with self.db.transaction() as tx:
            if tx.engine == "postgresql":
                # json, not jsonb: a key is all it reads, and json takes any text json.dumps wrote.
                keys = f"SELECT DISTINCT j.key FROM events, json_object_keys(events.data::json) AS j(key) WHERE {sql}"
            else:
                keys = f"SELECT DISTINCT j.key FROM events, json_each(events.data) AS j WHERE {sql}"
            found = tx.execute(keys, params).fetchall()
        return sorted(k for (k,) in found if k not in _HEAD)

    def export(self, table: str, bundle: str | None = None, since: float | None = None, fmt: str = "jsonl") -> Iterator[str]:
        """The events as lines of JSON, or as CSV with a header (fields: the union over the events, sorted)."""
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"unknown export format {fmt!r}; formats are jsonl and csv")
        if fmt == "jsonl":
            for row in self.iter_rows(table, bundle, since):
                yield json.dumps(row, ensure_ascii=False) + "\n"
            return
        fields = self.field_names(table, bundle, since)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*_HEAD, *fields])
        for row in self.iter_rows(table, bundle, since):
            writer.writerow([_cell(row.get(k)) for k in (*_HEAD, *fields)])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()


def _filter(table: str, bundle: str | None, since: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = ["tbl = ?"]
    params: list[Any] = [table]
    if bundle is not None:
        clauses.append("bundle = ?")
        params.append(bundle)
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    return " AND ".join(clauses), params


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value
