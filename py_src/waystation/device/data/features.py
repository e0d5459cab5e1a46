"""The device's copy of global feature tables, kept up to date by deltas from the server.

A delta is the JSON of `GET /api/features/NAME?since=VERSION` (server/features_api.py):

    {"name": "items", "version": 7, "full": false, "key": "item_id",
     "columns": [["item_id", "str"], ["title", "str"], ["embedding", "vector[384]"]],
     "rows": [["a1", "Soup", "<base64 of 384 float32 LE>"], ...],   # rows added or changed
     "deleted": ["a7", ...]}                                        # keys removed

`full` means the rows are the whole table (the device had no copy, or one too old): the copy
is replaced. Applying a delta, even an empty one, records when the copy was last known to be
current (`fetched_at`): a table's age is the time since, and a read of a table older than its
declared `max_age` raises StaleFeaturesError saying how old it is.

Each table `NAME` is the SQLite table `ft_NAME`, its key column the primary key; `_ws_features`
holds each table's version, fetch time, key and columns.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from ..errors import DataError, StaleFeaturesError
from .events import transaction
from .query import Query, TableRef
from .schema import Column, FeatureTable, check_name, parse_type

__all__ = ["FeatureStore", "format_age"]

_META = """CREATE TABLE IF NOT EXISTS _ws_features (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, fetched_at REAL NOT NULL, key TEXT NOT NULL, columns TEXT NOT NULL)"""


def format_age(seconds: float) -> str:
    """3725 -> '1h 2m 5s'."""
    seconds = int(seconds)
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    text = " ".join(f"{n}{unit}" for n, unit in parts if n)
    return text or "0s"


class FeatureStore:
    """The feature tables one bundle declares, over the connection `connect()` gives."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], bundle: str, tables: dict[str, FeatureTable]) -> None:
        self._connect = connect
        self.bundle = bundle
        self.tables = tables

    def table(self, name: str) -> FeatureTable:
        table = self.tables.get(name)
        if table is None:
            raise DataError(f"bundle {self.bundle!r} declares no feature table {name!r}; it declares {sorted(self.tables)}")
        return table

    def query(self, name: str, *, stale_ok: bool = False) -> Query:
        """The table as a query; reading it raises StaleFeaturesError past max_age unless `stale_ok`."""
        table = self.table(name)
        meta = self._meta(name)
        # Without a copy the query knows only the key column; reading it (or naming another
        # column) raises the error that says there is no copy.
        columns = _columns(meta["columns"], name) if meta else (Column(table.key, "str", optional=True),)

        def check() -> None:
            if stale_ok:
                self._check_copy(table)  # a copy is still needed, however old
            else:
                self.check_fresh(table)

        ref = TableRef(f'"ft_{name}"', f"feature table {name!r}", columns, check, lambda: self.age(name))
        return Query(self._connect, ref)

    def version(self, name: str) -> int | None:
        meta = self._meta(check_name(name, "feature table"))
        return None if meta is None else int(meta["version"])

    def age(self, name: str) -> float | None:
        """Seconds since the copy was last known current, or None without a copy."""
        meta = self._meta(check_name(name, "feature table"))
        return None if meta is None else max(0.0, time.time() - float(meta["fetched_at"]))

    def _check_copy(self, table: FeatureTable) -> float:
        age = self.age(table.name)
        if age is None:
            raise StaleFeaturesError(f"feature table {table.name!r} has not reached this device yet: there is no copy to read")
        return age

    def check_fresh(self, table: FeatureTable) -> None:
        limit = table.max_age_seconds
        age = self._check_copy(table)
        if limit is not None and age > limit:
            raise StaleFeaturesError(
                f"feature table {table.name!r} is {format_age(age)} old, older than its max_age {table.max_age}: "
                "the device has not reached the server since (read .age, or query with stale_ok=True, to use it anyway)"
            )

    def apply(self, delta: Any, now: float | None = None) -> dict[str, int]:
        """Apply a delta in one transaction; {"version", "changed", "deleted"}."""
        if isinstance(delta, (str, bytes)):
            delta = json.loads(delta)
        if not isinstance(delta, dict):
            raise DataError("a feature delta must be a JSON object")
        name = check_name(delta.get("name"), "feature table")
        key = check_name(delta.get("key"), f"feature table {name!r} key column")
        version = delta.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise DataError(f"feature delta of {name!r}: version must be an integer")
        columns = _columns(delta.get("columns"), name)
        if key not in [c.name for c in columns]:
            raise DataError(f"feature delta of {name!r}: key {key!r} is not among its columns")
        rows = [_decode_row(r, columns, name) for r in _list(delta.get("rows", []), name, "rows")]
        deleted = _list(delta.get("deleted", []), name, "deleted")
        columns_json = json.dumps([[c.name, c.type_text] for c in columns])
        db = self._connect()
        db.execute(_META)
        meta = self._meta(name)
        full = bool(delta.get("full")) or meta is None or meta["columns"] != columns_json
        with transaction(db):
            if full:
                db.execute(f'DROP TABLE IF EXISTS "ft_{name}"')
                defs = ", ".join(f'"{c.name}" {c.sql_type}{" PRIMARY KEY" if c.name == key else ""}' for c in columns)
                db.execute(f'CREATE TABLE "ft_{name}" ({defs})')
            names = ", ".join(f'"{c.name}"' for c in columns)
            db.executemany(f'INSERT OR REPLACE INTO "ft_{name}" ({names}) VALUES ({", ".join("?" * len(columns))})', rows)
            db.executemany(f'DELETE FROM "ft_{name}" WHERE "{key}" = ?', [(k,) for k in deleted])
            db.execute("INSERT OR REPLACE INTO _ws_features VALUES (?, ?, ?, ?, ?)",
                       (name, version, time.time() if now is None else now, key, columns_json))
        return {"version": version, "changed": len(rows), "deleted": len(deleted), "full": int(full)}

    def _meta(self, name: str) -> dict[str, Any] | None:
        db = self._connect()
        db.execute(_META)
        row = db.execute("SELECT version, fetched_at, key, columns FROM _ws_features WHERE name = ?", (name,)).fetchone()
        return None if row is None else dict(zip(("version", "fetched_at", "key", "columns"), row))


def _columns(raw: Any, name: str) -> tuple[Column, ...]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, list) or not raw:
        raise DataError(f"feature delta of {name!r}: 'columns' must be a list of [name, type]")
    columns = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            raise DataError(f"feature delta of {name!r}: column {item!r} is not [name, type]")
        cname = check_name(item[0], f"feature table {name!r} column")
        kind, dim, _ = parse_type(item[1], f"feature table {name!r} column {cname!r}")
        columns.append(Column(cname, kind, dim, optional=True))
    return tuple(columns)


def _list(value: Any, name: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise DataError(f"feature delta of {name!r}: {what!r} must be a list")
    return value


def _decode_row(row: Any, columns: tuple[Column, ...], name: str) -> tuple[Any, ...]:
    if not isinstance(row, list) or len(row) != len(columns):
        raise DataError(f"feature delta of {name!r}: a row must be a list of {len(columns)} values")
    values = []
    for col, value in zip(columns, row):
        where = f"feature table {name!r}, column {col.name!r}"
        if col.kind == "vector" and isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise DataError(f"{where}: a vector must be base64 float32 or a list of numbers") from None
        values.append(col.encode(value, where))
    return tuple(values)
