"""The one interface both data backends implement: a SQLite database for events and features.

`waystation.device.data` (EventStore, FeatureStore, queries) does all the SQL; a backend
only owns the database underneath: where it lives and how a committed write survives.

    class DataBackend(Protocol):
        name: str                              # "native", "browser"
        def connect(self) -> sqlite3.Connection
        def durable(self) -> Awaitable[None] | None

`connect()` returns THE connection of the current account (in the browser) or data folder
(on CPython): the same object on every call while that account is signed in, opened on the
first call. The data layer calls it at the start of each operation and never keeps the
connection across an `await`, so a backend may switch to another account's database
between two operations (closing the old one). The backend sets the connection up
(`isolation_level=None`, i.e. autocommit: the data layer issues BEGIN IMMEDIATE/COMMIT
itself; any journal/synchronous pragmas its storage needs). The data layer creates and
migrates its own tables (names starting `ev_`, `ft_` and `_ws_`); a backend creates none.

`durable()` is called after each committed write batch (events added, a feature delta
applied, relay bookkeeping) and, when it returns an awaitable, awaited before the write is
reported done: `await app.data.add_events(...)` resolving means the events survive a tab
killed right after. On CPython it is a no-op (SQLite's commit with synchronous=FULL is
durable). In the browser it persists the database wherever the browser backend keeps it.

The worker's entry points (all on `app.data`, a `waystation.device.data.DeviceData` built
by `App.open` from `hosts.default_data_backend()`):

    ids = await app.data.add_events(name, rows)          # rows: dict | list[dict] | JSON text
    batch = app.data.relay_batch(limit=500)               # {"events", "upto", "seqs"} or None (<= 512 KiB JSON)
    await app.data.mark_relayed(batch["upto"])           # after the server acknowledged it
    version = app.data.feature_version(name)             # int | None: ?since= for GET /api/features
    await app.data.apply_features(delta)                 # the JSON of GET /api/features/NAME

Errors are `waystation.device.errors.DataError` (schema violations name table and field).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable
from typing import Protocol

__all__ = ["DataBackend"]


class DataBackend(Protocol):
    """Where the device's events and feature tables live: one SQLite connection per account."""

    name: str

    def connect(self) -> sqlite3.Connection:
        """The current account's connection (autocommit mode), opened on first use."""

    def durable(self) -> Awaitable[None] | None:
        """Make the last committed write survive the process; awaited when it returns an awaitable."""
