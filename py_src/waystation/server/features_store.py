"""Published feature tables under --data (`features.sqlite3`, or tables of the PostgreSQL
database), versioned row by row.

    store = FeatureStore(Path("data"))
    store.publish("items", Path("items.jsonl"), key="item_id")   # {"version": 3, "added": 2, "changed": 1, ...}
    store.delta("items", since=2)                                  # what a device at version 2 needs

Each row remembers the version that last changed it; a removed row stays as a tombstone
(data NULL) with the version that removed it. So the delta since version V is the rows
changed after V plus the keys removed after V, and a publish that changes k rows makes a
delta of k rows, whatever the table's size. A device with no copy, a copy from before the
table's columns last changed (`full_since`), or a version the server never made, gets the
whole table (`"full": true`).

Rows are stored as the JSON list the delta sends (column order; vectors as base64 of
float32 little-endian), so serving a delta decodes nothing.

A publish reads the table, then writes its next version: it holds the table's lock meanwhile
(SQLite's write lock, a PostgreSQL advisory lock on the table's name), so two publishes of one
table, from two processes or two server instances, make two versions, one after the other.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from ..device.data.schema import Column, check_name, pack_vector
from ..device.errors import DataError
from .storage import Connection, Migration, Storage

__all__ = ["FEATURES_FILE", "FeatureStore", "MIGRATIONS", "read_table"]

FEATURES_FILE = "features.sqlite3"
MIGRATIONS = (
    Migration(1, sqlite="""
CREATE TABLE IF NOT EXISTS feature_tables (
    name TEXT PRIMARY KEY, key TEXT NOT NULL, columns TEXT NOT NULL,
    version INTEGER NOT NULL, full_since INTEGER NOT NULL, published_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_rows (
    name TEXT NOT NULL, k TEXT NOT NULL, data TEXT, version INTEGER NOT NULL,
    PRIMARY KEY (name, k)
);
CREATE INDEX IF NOT EXISTS feature_rows_version ON feature_rows (name, version);
""", postgresql="""
CREATE TABLE IF NOT EXISTS feature_tables (
    name TEXT PRIMARY KEY, key TEXT NOT NULL, columns TEXT NOT NULL,
    version INTEGER NOT NULL, full_since INTEGER NOT NULL, published_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_rows (
    name TEXT NOT NULL, k TEXT NOT NULL, data TEXT, version INTEGER NOT NULL,
    PRIMARY KEY (name, k)
);
CREATE INDEX IF NOT EXISTS feature_rows_version ON feature_rows (name, version);
"""),
)
_PUT_ROW = ("INSERT INTO feature_rows (name, k, data, version) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, k) DO UPDATE SET data = excluded.data, version = excluded.version")
_PUT_TABLE = ("INSERT INTO feature_tables (name, key, columns, version, full_since, published_at) "
              "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET key = excluded.key, "
              "columns = excluded.columns, version = excluded.version, full_since = excluded.full_since, "
              "published_at = excluded.published_at")


class FeatureStore:
    """The feature tables of one data folder. Blocking: call from a thread pool on the server."""

    def __init__(self, data: str | Path | Storage) -> None:
        self.storage = Storage.at(data)
        self.db = self.storage.database("features", MIGRATIONS)

    def publish(self, name: str, file: Path, key: str) -> dict[str, Any]:
        """Publish FILE (CSV or JSON lines) as table `name`: a new version holding only what changed."""
        check_name(name, "feature table")
        columns, rows = read_table(file, key)
        return self.publish_rows(name, columns, rows, key)

    def publish_rows(self, name: str, columns: list[Column], rows: dict[str, str], key: str) -> dict[str, Any]:
        columns_json = json.dumps([[c.name, c.type_text] for c in columns])
        with self.db.transaction(immediate=True) as tx:
            if tx.engine == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", ("waystation.features:" + name,))
            table = tx.execute("SELECT version, columns, key FROM feature_tables WHERE name = ?", (name,)).fetchone()
            old_version = table[0] if table else 0
            reshaped = table is None or table[1] != columns_json or table[2] != key
            old = dict(tx.execute("SELECT k, data FROM feature_rows WHERE name = ? AND data IS NOT NULL", (name,)))
            added = [k for k in rows if k not in old]
            changed = [k for k in rows if k in old and old[k] != rows[k]]
            deleted = [k for k in old if k not in rows]
            counts = {"added": len(added), "changed": len(changed), "deleted": len(deleted),
                      "unchanged": len(rows) - len(added) - len(changed)}
            if not (reshaped or added or changed or deleted):
                return {"name": name, "version": old_version, **counts}
            version = old_version + 1
            write = rows if reshaped else {k: rows[k] for k in added + changed}
            if write:
                tx.executemany(_PUT_ROW, [(name, k, data, version) for k, data in write.items()])
            if deleted:
                tx.executemany("UPDATE feature_rows SET data = NULL, version = ? WHERE name = ? AND k = ?",
                               [(version, name, k) for k in deleted])
            full_since = version if reshaped else _full_since(tx, name)
            tx.execute(_PUT_TABLE, (name, key, columns_json, version, full_since, time.time()))
        return {"name": name, "version": version, **counts}

    def head(self, name: str) -> tuple[int, int] | None:
        """(version, full_since) of a table, or None: which answer a `since` gets, without reading rows."""
        with self.db.transaction() as tx:
            row = tx.execute("SELECT version, full_since FROM feature_tables WHERE name = ?", (name,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def delta(self, name: str, since: int | None) -> dict[str, Any] | None:
        """The rows a device at version `since` needs (None: no such table)."""
        with self.db.transaction() as tx:
            if tx.engine == "postgresql":
                # The table's head and its rows from one snapshot, as SQLite's read transaction gives:
                # a publish committing between the two reads must not mix two versions.
                tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            table = tx.execute("SELECT key, columns, version, full_since FROM feature_tables WHERE name = ?", (name,)).fetchone()
            if table is None:
                return None
            key, columns, version, full_since = table
            full = since is None or since < full_since or since > version
            if full:
                found = tx.execute("SELECT k, data FROM feature_rows WHERE name = ? AND data IS NOT NULL", (name,)).fetchall()
            else:
                found = tx.execute("SELECT k, data FROM feature_rows WHERE name = ? AND version > ?", (name, since)).fetchall()
        rows = [data for _, data in found if data is not None]
        deleted = [json.loads(k) for k, data in found if data is None]
        # The rows are already JSON text: spliced in, not parsed and printed again.
        head = {"name": name, "version": version, "since": since, "full": full, "key": key, "columns": json.loads(columns),
                "deleted": deleted}
        return {**head, "rows_json": "[" + ",".join(rows) + "]", "count": len(rows)}

    def delta_json(self, name: str, since: int | None) -> bytes | None:
        delta = self.delta(name, since)
        if delta is None:
            return None
        rows_json = delta.pop("rows_json")
        delta.pop("count")
        head = json.dumps(delta, separators=(",", ":"))
        return (head[:-1] + ',"rows":' + rows_json + "}").encode()

    def tables(self) -> list[dict[str, Any]]:
        with self.db.transaction() as tx:
            found = tx.execute("SELECT name, key, columns, version, published_at FROM feature_tables").fetchall()
        # Sorted here: PostgreSQL's ORDER BY would follow the database's collation, not code points.
        return [{"name": n, "key": k, "columns": json.loads(c), "version": v, "published_at": p}
                for n, k, c, v, p in sorted(found)]


def _full_since(tx: Connection, name: str) -> int:
    row = tx.execute("SELECT full_since FROM feature_tables WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 1


def read_table(file: Path, key: str) -> tuple[list[Column], dict[str, str]]:
    """The columns (types inferred) and {key as JSON: row as JSON} of a CSV or JSON-lines file."""
    check_name(key, "key column")
    text = Path(file).read_text(encoding="utf-8")
    records = _csv_records(text) if Path(file).suffix.lower() == ".csv" else _jsonl_records(text, file)
    if not records:
        raise DataError(f"{file}: no rows")
    names = list(records[0])
    for name in names:
        check_name(name, f"{file}: column")
    if key not in names:
        raise DataError(f"{file}: no key column {key!r}; its columns are {names}")
    columns = [_infer(name, [r.get(name) for r in records], file) for name in names]
    rows: dict[str, str] = {}
    for index, record in enumerate(records):
        extra = set(record) - set(names)
        if extra:
            raise DataError(f"{file}: row {index + 1} has columns the first row lacks: {sorted(extra)}")
        values = [_encode(c, record.get(c.name), f"{file}: row {index + 1}, column {c.name!r}") for c in columns]
        k = json.dumps(record.get(key))
        if record.get(key) is None:
            raise DataError(f"{file}: row {index + 1} has no key {key!r}")
        if k in rows:
            raise DataError(f"{file}: key {record[key]!r} appears twice (rows must have unique {key!r})")
        rows[k] = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    return columns, rows


def _csv_records(text: str) -> list[dict[str, Any]]:
    """CSV cells are text: JSON arrays become vectors, whole numbers ints, other numbers floats, empty cells null."""
    return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def _cell(text: str | None) -> Any:
    if text is None or text == "":
        return None
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _jsonl_records(text: str, file: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{file}: line {number} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise DataError(f"{file}: line {number} is not a JSON object")
        records.append(record)
    return records


def _infer(name: str, values: list[Any], file: Path) -> Column:
    present = [v for v in values if v is not None]
    optional = len(present) < len(values)  # a column with empty cells is typed "T?"
    kinds = {_kind(v) for v in present}
    if not kinds:
        return Column(name, "str", optional=True)
    if kinds == {"vector"}:
        dims = {len(v) for v in present}
        if len(dims) != 1:
            raise DataError(f"{file}: column {name!r} holds vectors of different lengths {sorted(dims)}")
        return Column(name, "vector", dims.pop(), optional)
    for kind in ("bool", "int", "str"):
        if kinds == {kind}:
            return Column(name, kind, optional=optional)
    if kinds == {"int", "float"} or kinds == {"float"}:
        return Column(name, "float", optional=optional)
    raise DataError(f"{file}: column {name!r} mixes kinds of values: {sorted(kinds)}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return "vector"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def _encode(column: Column, value: Any, where: str) -> Any:
    """The delta's form of a value: vectors as base64 float32 (a third the size of JSON numbers)."""
    if value is None:
        return None
    if column.kind == "vector":
        assert column.dim is not None
        return base64.b64encode(pack_vector(value, column.dim, where)).decode("ascii")
    if column.kind == "float":
        return float(value)
    return value
