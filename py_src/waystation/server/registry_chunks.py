"""The registry's chunks when its state is in PostgreSQL: the bytes live in the database, so
every server instance (on any machine) can serve a chunk another one published, and the
instance's own `data/chunks` folder is a cache filled on first use.

It is a `ChunkStore` to its users (`path(sha)`, `in`, `put`, `put_file`): the bundle and run
APIs read `registry.chunks.path(sha)` as they do on SQLite, where the folder itself is the truth.

A cached file is trusted only once its bytes hash to its name (checked once per process), and
written aside then renamed, so a crash or a full disk never leaves a wrong chunk being served.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from ..bundles.chunks import Chunk, ChunkStore, split_at
from ..device.errors import BundleError
from .storage import Connection, Database

__all__ = ["CHUNK_BYTES_TABLE", "DatabaseChunkStore"]

CHUNK_BYTES_TABLE = "chunk_bytes"
# Rows sent to the database in one statement batch while publishing: a large model's chunks go
# in several batches (of one transaction) instead of all its bytes at once.
_BATCH_BYTES = 16 * 1024 * 1024


class DatabaseChunkStore(ChunkStore):
    """Chunks kept in table `chunk_bytes` of `db`, cached as files under `root`."""

    def __init__(self, root: str | Path, db: Database) -> None:
        super().__init__(root)
        self.db = db
        self._verified: set[str] = set()  # cached files whose bytes were hashed by this process
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        """The chunk's cached file, fetched from the database if not cached yet; a path that does
        not exist when no chunk has that hash."""
        local = super().path(sha256)
        if self._cached(sha256, local):
            return local
        with self.db.transaction() as tx:
            row = tx.execute(f"SELECT data FROM {CHUNK_BYTES_TABLE} WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:
            return local
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BundleError(f"chunk {sha256[:16]} in the database does not match its sha256: not serving it")
        _write(local, data)
        with self._lock:
            self._verified.add(sha256)
        return local

    def __contains__(self, sha256: str) -> bool:
        if self._cached(sha256, super().path(sha256)):
            return True
        with self.db.transaction() as tx:
            return tx.execute(f"SELECT 1 FROM {CHUNK_BYTES_TABLE} WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def put(self, sha256: str, data: bytes | memoryview) -> bool:
        """Store one chunk in the database unless already there; return whether it was new."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BundleError(f"chunk {sha256[:16]}: its bytes do not hash to its name")
        with self.db.transaction() as tx:
            return _insert(tx, [(sha256, bytes(data))]) > 0

    def put_file(self, data: bytes, chunks: Iterable[Chunk]) -> int:
        """Store a file's chunks (as its manifest cuts it), sending only those the database lacks;
        return how many bytes were new (to this publish: another one may send some at the same time)."""
        pieces = dict(split_at(data, chunks))  # checked against their hashes; a repeated chunk once
        with self.db.transaction() as tx:
            have = {row[0] for row in tx.execute(f"SELECT sha256 FROM {CHUNK_BYTES_TABLE} WHERE sha256 = ANY(?)",
                                                 (sorted(pieces),))}
            new, batch, size = 0, [], 0
            # In hash order: two publishers sharing chunks take their row locks in one order, never deadlocking.
            for sha256 in sorted(set(pieces) - have):
                batch.append((sha256, bytes(pieces[sha256])))
                size += len(pieces[sha256])
                if size >= _BATCH_BYTES:
                    _insert(tx, batch)
                    new, batch, size = new + size, [], 0
            _insert(tx, batch)
            return new + size

    def _cached(self, sha256: str, local: Path) -> bool:
        """Whether `local` holds the chunk's bytes (hashed once per process; a wrong file is dropped)."""
        if sha256 in self._verified and local.is_file():
            return True
        try:
            data = local.read_bytes()
        except FileNotFoundError:
            return False
        if hashlib.sha256(data).hexdigest() != sha256:
            local.unlink(missing_ok=True)
            return False
        with self._lock:
            self._verified.add(sha256)
        return True


def _insert(tx: Connection, rows: list[tuple[str, bytes]]) -> int:
    """Insert chunk rows not there yet; how many were new."""
    if not rows:
        return 0
    return tx.executemany(f"INSERT INTO {CHUNK_BYTES_TABLE} (sha256, data) VALUES (?, ?) "
                          "ON CONFLICT (sha256) DO NOTHING", rows).rowcount



def _write(target: Path, data: bytes) -> None:
    """Write a chunk's cached file aside then rename it: a reader never sees half a chunk."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
