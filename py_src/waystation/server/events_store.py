"""Relayed events under --data (`events.sqlite3`): each stored once, exported as JSON lines or CSV.

    store = EventLog(Path("data"))
    store.add("demo", "alice", [{"table": "clicks", "id": "9f...", "ts": 1767225600.5, "item_id": "a1"}])
    for line in store.export("clicks", bundle="demo", since=0, fmt="jsonl"): ...

An event's identity is (bundle, table, id): a device that sends a batch again (it never
heard the answer) stores nothing twice (INSERT OR IGNORE on that primary key).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ._sqlite import create, transaction

__all__ = ["EVENTS_FILE", "EventLog"]

EVENTS_FILE = "events.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    bundle TEXT NOT NULL, tbl TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL,
    user TEXT NOT NULL, received_at REAL NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (bundle, tbl, id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (tbl, ts);
"""
_HEAD = ("bundle", "table", "id", "ts", "user")


class EventLog:
    """The relayed events of one data folder. Blocking: call from a thread pool on the server."""

    def __init__(self, data: str | Path) -> None:
        self.path = Path(data) / EVENTS_FILE
        create(self.path, _SCHEMA)

    def add(self, bundle: str, user: str, events: list[dict[str, Any]]) -> dict[str, int]:
        """Store the events (already checked) in one transaction; {"stored": new, "duplicates": seen before}."""
        now = time.time()
        rows = []
        for event in events:
            fields = {k: v for k, v in event.items() if k not in ("table", "id", "ts")}
            rows.append((bundle, event["table"], event["id"], float(event["ts"]), user, now,
                         json.dumps(fields, separators=(",", ":"), ensure_ascii=False)))
        with self._db() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            stored = db.total_changes - before
        return {"stored": stored, "duplicates": len(rows) - stored}

    def count(self, table: str, bundle: str | None = None) -> int:
        sql, params = _filter(table, bundle, None)
        with self._db() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM events WHERE {sql}", params).fetchone()[0])

    def rows(self, table: str, bundle: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """The events of `table` (of `bundle`, at or after `since`), oldest first."""
        return list(self.iter_rows(table, bundle, since))

    def iter_rows(self, table: str, bundle: str | None = None, since: float | None = None) -> Iterator[dict[str, Any]]:
        """The same, read as they are written out: an export holds one event in memory, not all of them."""
        sql, params = _filter(table, bundle, since)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            for row in db.execute(f"SELECT bundle, tbl, id, ts, user, data FROM events WHERE {sql} ORDER BY ts, id", params):
                yield {**dict(zip(_HEAD, row[:5])), **json.loads(row[5])}
        finally:
            db.close()

    def field_names(self, table: str, bundle: str | None = None, since: float | None = None) -> list[str]:
        """Every relayed field name among these events, sorted (SQLite's json_each reads them)."""
        sql, params = _filter(table, bundle, since)
        with self._db() as db:
            found = db.execute(f"SELECT DISTINCT j.key FROM events, json_each(events.data) AS j WHERE {sql}", params).fetchall()
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

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)


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
