"""The browser data backend: the current account's SQLite database, kept in OPFS by the worker.

The worker registers `DeviceData.host` from web/device_data.js as the JS module
`_waystation_data`; this is the only Python module that touches it. The worker mounts the
account's database folder (an Emscripten file system whose files are OPFS sync access
handles) before Python reads, and mounts another account's in its place on sign-in or out; it
tells this backend first, which closes the connection, and `connect()` opens the new one.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["BrowserDataBackend"]

# Every read of the file is a call into the handle: a cache big enough for the working set of
# 100,000 events keeps repeated queries in memory (SQLite drops it when another tab commits).
_CACHE_KIB = 32 * 1024


def _host() -> tuple[Any, Any]:
    from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

    import _waystation_data  # type: ignore[import-not-found]

    return _waystation_data, create_proxy


class BrowserDataBackend:
    """The database the worker mounted: the signed-in account's, or the device's own."""

    name = "browser"

    def __init__(self) -> None:
        self._host, create_proxy = _host()
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self._release = create_proxy(self.close)  # kept: JS calls it on every account switch
        self._host.onRelease(self._release)

    def connect(self) -> sqlite3.Connection:
        path = str(self._host.path())
        if self._db is None or path != self._path:
            self.close()
            db = sqlite3.connect(path, isolation_level=None)
            # A rollback journal, not WAL: WAL needs shared memory, which Emscripten lacks.
            # synchronous=FULL: the journal is flushed before the database is written, so a tab
            # killed mid-commit leaves a journal that rolls the commit back on the next open.
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._db, self._path = db, path
        return self._db

    def durable(self) -> None:
        # SQLite's fsync at COMMIT already flushed the handles; this keeps the promise explicit.
        self._host.flush()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self._path = None
