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

# Reads come from the worker's image of the file (web/device_data.js); SQLite's own page cache
# saves copying and decoding pages again (dropped when another tab commits).
_CACHE_KIB = 16 * 1024


def _host() -> tuple[Any, Any]:
    import _waystation_data  # type: ignore[import-not-found]
    from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

    return _waystation_data, create_proxy


class BrowserDataBackend:
    """The database the worker mounted: the signed-in account's, or the device's own."""

    name = "browser"

    def __init__(self) -> None:
        self._host, create_proxy = _host()
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self._release = create_proxy(self.close)  # kept: JS calls it on every account switch
        # Closed connections stay referenced: the stores remember which connection they set up
        # by id(), and a freed connection's id could be reused by the next account's.
        self._closed: list[sqlite3.Connection] = []
        self._host.onRelease(self._release)

    def connect(self) -> sqlite3.Connection:
        path = str(self._host.path())
        if self._db is None or path != self._path:
            self.close()
            db = sqlite3.connect(path, isolation_level=None)
            # The worker's file system writes a batch to OPFS atomically itself (an undo log, at
            # durable(), between transactions), and SQLite's syncs never reach OPFS (Emscripten's
            # fdatasync does nothing): the journal lives in memory and SQLite does not sync.
            # (WAL would need shared memory, which Emscripten lacks.)
            db.execute("PRAGMA journal_mode=MEMORY")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._db, self._path = db, path
        return self._db

    def durable(self) -> None:
        # The committed batch goes from the worker's image to OPFS, atomically (web/device_data.js).
        self._host.flush()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._closed.append(self._db)
            self._db = None
            self._path = None
