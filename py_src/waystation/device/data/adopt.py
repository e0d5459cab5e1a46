"""An account's first sign-in on a device: the device's own events move into the account's database.

Events added without an account are stored in the device's own database. The first time an
account signs in on the device (its database holds no event table yet), they move into the
account's database with their relay positions, so the ones not relayed yet are relayed under
the account, as web/device_state.js moves the device's state documents. Feature tables stay:
they are global and fetched again. web/device_data.js mounts both databases and calls these;
`flush(which)` ("account" or "device") writes that file's image to OPFS, atomically.

Safe against the tab being killed at any point:

1. One transaction of the account's database copies every event table (rows keep their `seq`,
   which keeps the relay positions valid: the account has no event table yet) and the relay
   positions, and records in `_ws_adopted` the highest `seq` copied per table; then the
   account's file is flushed. Killed before that flush, the account's database is as it was and
   the next sign-in moves everything again.
2. The copied rows (`seq` up to what `_ws_adopted` says) are deleted from the device's database;
   its file is flushed.
3. `_ws_adopted` is emptied; the account's file is flushed.

Killed after 1, the account's database still has `_ws_adopted` rows: the next mount of it
(`needs_device` says so) does 2 and 3. Events the device added meanwhile have higher `seq`s and
stay. Relaying an event twice (the device's copy moved again into another account before 2 ran)
stores it once: the server keys events by (bundle, table, id).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from .events import transaction

__all__ = ["adopt", "needs_device"]

_ADOPTED_SCHEMA = "CREATE TABLE IF NOT EXISTS main._ws_adopted (tbl TEXT PRIMARY KEY, upto INTEGER NOT NULL)"
_EVENT_TABLES = r"SELECT name, sql FROM {db}.sqlite_master WHERE type = 'table' AND name LIKE 'ev\_%' ESCAPE '\'"


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    # As hosts/data_browser.py: SQLite's syncs never reach OPFS; the worker's flush is atomic.
    db.execute("PRAGMA journal_mode=MEMORY")
    db.execute("PRAGMA synchronous=OFF")
    return db


def _has_table(db: sqlite3.Connection, schema: str, name: str) -> bool:
    return db.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _state(db: sqlite3.Connection) -> str:
    """"finish": a move was copied but not yet deleted from the device; "move": first sign-in; "": neither."""
    if _has_table(db, "main", "_ws_adopted") and db.execute("SELECT 1 FROM _ws_adopted LIMIT 1").fetchone():
        return "finish"
    return "" if db.execute(_EVENT_TABLES.format(db="main")).fetchone() else "move"


def needs_device(account: str) -> bool:
    """Whether mounting the account's database needs the device's too (a move to make or to finish)."""
    db = _connect(account)
    try:
        return _state(db) != ""
    finally:
        db.close()


def adopt(account: str, device: str, flush: Callable[[str], Any]) -> str:
    """Move the device's events into the account's database (or finish a move); JSON {"moved", "finished"}."""
    db = _connect(account)
    try:
        db.execute("ATTACH DATABASE ? AS dev", (device,))
        db.execute("PRAGMA dev.journal_mode=MEMORY")
        state = _state(db)
        moved = 0
        if state == "move":
            moved = _copy(db)
            if not moved:
                return json.dumps({"moved": 0, "finished": False})
            flush("account")
        elif state != "finish":
            return json.dumps({"moved": 0, "finished": False})
        with transaction(db):
            for tbl, upto in db.execute("SELECT tbl, upto FROM main._ws_adopted").fetchall():
                if _has_table(db, "dev", tbl):
                    db.execute(f'DELETE FROM dev."{tbl}" WHERE seq <= ?', (upto,))
        flush("device")
        with transaction(db):
            db.execute("DELETE FROM main._ws_adopted")
        flush("account")
        return json.dumps({"moved": moved, "finished": True})
    finally:
        db.close()


def _copy(db: sqlite3.Connection) -> int:
    """Step 1, in one transaction of the account's database; how many events it copied."""
    tables = db.execute(_EVENT_TABLES.format(db="dev")).fetchall()
    indexes = db.execute(
        r"SELECT sql FROM dev.sqlite_master WHERE type = 'index' AND name LIKE 'ix\_%' ESCAPE '\' AND sql IS NOT NULL"
    ).fetchall()
    relay = _has_table(db, "dev", "_ws_relay")
    moved = 0
    with transaction(db):
        db.execute(_ADOPTED_SCHEMA)
        db.execute("CREATE TABLE IF NOT EXISTS main._ws_relay (tbl TEXT PRIMARY KEY, upto INTEGER NOT NULL)")
        for name, sql in tables:
            db.execute(sql)  # the device's own CREATE TABLE: same columns, same order, in main
            db.execute(f'INSERT INTO main."{name}" SELECT * FROM dev."{name}"')
            top = db.execute(f'SELECT max(seq), count(*) FROM main."{name}"').fetchone()
            if top[1]:
                moved += int(top[1])
                db.execute("INSERT INTO main._ws_adopted VALUES (?, ?)", (name, int(top[0])))
        for (sql,) in indexes:
            db.execute(sql)
        if relay:
            db.execute("INSERT OR REPLACE INTO main._ws_relay SELECT tbl, upto FROM dev._ws_relay")
    return moved
