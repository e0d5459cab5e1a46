"""The native data backend: one SQLite file, `waystation.sqlite3`, under a data folder.

The folder is `waystation run --data DIR`, else $WAYSTATION_DATA, else the user's data
folder ($XDG_DATA_HOME/waystation, by default ~/.local/share/waystation).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["DATA_FILE", "NativeDataBackend", "default_data_dir"]

DATA_FILE = "waystation.sqlite3"


def default_data_dir() -> Path:
    if os.environ.get("WAYSTATION_DATA"):
        return Path(os.environ["WAYSTATION_DATA"])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "waystation"


class NativeDataBackend:
    """The database of one data folder, opened on first use and kept open."""

    name = "native"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._db: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self.folder / DATA_FILE

    def connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            # WAL lets `waystation events export` read while a runtime writes; FULL makes
            # each COMMIT durable on its own, so durable() has nothing left to do.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            self._db = db
        return self._db

    def durable(self) -> None:
        return None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
