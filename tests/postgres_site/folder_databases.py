"""One PostgreSQL database per data folder, made on first use, named after the folder's path:
every process of a test run derives the same name, so a server and the test that reads its
state meet in one database."""

from __future__ import annotations

import hashlib
import threading
from contextlib import suppress
from pathlib import Path

__all__ = ["database_for", "install"]

_made: set[str] = set()
_lock = threading.Lock()


def database_for(admin_url: str, data: Path) -> str:
    """The URL of `data`'s database on the cluster of `admin_url`, made if missing."""
    import psycopg
    from psycopg import errors

    name = "d_" + hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:24]
    with _lock:
        if name not in _made:
            # another process of the run may have made it first
            with psycopg.connect(admin_url, autocommit=True) as admin, \
                    suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                admin.execute(f"CREATE DATABASE {name}")
            _made.add(name)
    return admin_url.rsplit("/", 1)[0] + "/" + name


def install(admin_url: str) -> None:
    from waystation.server import storage

    storage.default_url = lambda data: database_for(admin_url, data)
