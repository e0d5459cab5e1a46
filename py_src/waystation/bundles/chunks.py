"""Content-defined chunks of bundle files and the content-addressed store that holds them.

A file is cut where its content says so (FastCDC), not at fixed offsets, so an edit in
the middle of a model changes only the chunks around it: the bytes before and after keep
their boundaries, hence their SHA-256, hence their URLs (`chunks/<sha256>`), and a device
that has the previous version fetches only the new chunks.

The sizes below were chosen by measurement (bench/chunking.py, figures in bench/README.md):
smaller chunks fetch fewer unchanged bytes but mean more requests and a longer manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..device.errors import BundleError

__all__ = ["CHUNK_AVG", "CHUNK_MAX", "CHUNK_MIN", "ChunkStore", "split", "split_at"]

CHUNK_MIN = 16 * 1024
CHUNK_AVG = 64 * 1024
CHUNK_MAX = 256 * 1024

_SHA256 = re.compile(r"[0-9a-f]{64}")
Chunk = tuple[str, int]


def split(data: bytes, *, min_size: int = CHUNK_MIN, avg_size: int = CHUNK_AVG, max_size: int = CHUNK_MAX) -> list[Chunk]:
    """Cut `data` into content-defined chunks: `[(sha256 hex, size), ...]` (empty for no bytes)."""
    from fastcdc import fastcdc

    cuts = fastcdc(data, min_size=min_size, avg_size=avg_size, max_size=max_size)
    view = memoryview(data)
    return [(hashlib.sha256(view[c.offset:c.offset + c.length]).hexdigest(), c.length) for c in cuts]


def split_at(data: bytes, chunks: Iterable[Chunk]) -> list[tuple[str, memoryview]]:
    """Cut `data` where a manifest says, checking each piece against its hash."""
    view, offset, pieces = memoryview(data), 0, []
    for sha256, size in chunks:
        piece = view[offset:offset + size]
        if len(piece) != size or hashlib.sha256(piece).hexdigest() != sha256:
            raise BundleError(f"chunk {sha256[:16]} at offset {offset} does not match the file's bytes")
        pieces.append((sha256, piece))
        offset += size
    if offset != len(data):
        raise BundleError(f"the chunks cover {offset} bytes, the file has {len(data)}")
    return pieces


class ChunkStore:
    """A folder of immutable files named by the SHA-256 of their bytes: `ROOT/<sha256>`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"{sha256!r} is not a lowercase SHA-256 hex digest")
        return self.root / sha256

    def __contains__(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, sha256: str, data: bytes | memoryview) -> bool:
        """Store one chunk unless already there; return whether it was new."""
        target = self.path(sha256)
        if target.is_file():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        # Written aside then renamed: a reader never sees half a chunk, and two writers agree.
        fd, partial = tempfile.mkstemp(dir=self.root, prefix=".partial-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
        return True

    def put_file(self, data: bytes, chunks: Iterable[Chunk]) -> int:
        """Store a file's chunks (as its manifest cuts it); return how many bytes were new."""
        return sum(len(piece) for sha256, piece in split_at(data, chunks) if self.put(sha256, piece))
