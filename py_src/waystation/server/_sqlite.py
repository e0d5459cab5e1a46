"""The server's SQLite files (accounts, registry, relayed events, feature tables): a connection
per operation, each one transaction, so that the server's threads and the command line may all
write to one file.

    create(path, SCHEMA)                     # the folder, WAL mode, the tables
    with transaction(path) as db:            # committed on leaving, rolled back on an error
        db.execute("INSERT ...")
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["create", "transaction"]


def create(path: Path, schema: str) -> None:
    """Make `path` (and its folder) a WAL-mode database holding `schema`'s tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with transaction(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)


@contextmanager
def transaction(path: Path, *, timeout: float = 10, foreign_keys: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to `path` holding one transaction, closed on leaving."""
    db = sqlite3.connect(path, timeout=timeout)
    try:
        if foreign_keys:
            db.execute("PRAGMA foreign_keys = ON")
        with db:  # commit, or roll back on an error
            yield db
    finally:
        db.close()
