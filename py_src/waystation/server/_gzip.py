"""Gzip for what the bundle API serves: chunks (compressed once, kept beside the registry) and manifests.

Quantized weights compress by about a quarter, tokenizers and manifests by half or more;
random-looking bytes not at all, and then the chunk goes out as it is. Compressed copies of
chunks are made on first request and kept in DATA/chunks.gz/, so a chunk costs one compression
however many devices fetch it.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["GzipCache", "accepts_gzip", "compress"]

LEVEL = 6
WORTH_IT = 0.95  # send compressed only when it saves at least 5%


def accepts_gzip(headers: Mapping[str, str]) -> bool:
    """Whether a request takes gzip: it says so, and asks for the whole body (no Range)."""
    return "gzip" in headers.get("accept-encoding", "") and "range" not in headers


def compress(data: bytes) -> bytes | None:
    """`data` gzip-compressed, or None when that does not save enough to be worth decoding."""
    packed = gzip.compress(data, LEVEL, mtime=0)
    return packed if len(packed) < WORTH_IT * len(data) else None


class GzipCache:
    """Compressed copies of immutable files: ROOT/<name>.gz, or an empty ROOT/<name>.raw when not worth it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str, source: Path) -> Path | None:
        """The compressed copy of `source` (made now if need be), or None if it does not compress."""
        packed, raw = self.root / f"{name}.gz", self.root / f"{name}.raw"
        if packed.is_file():
            return packed
        if raw.is_file():
            return None
        data = compress(source.read_bytes())
        self._write(raw if data is None else packed, data or b"")
        return None if data is None else packed

    def _write(self, target: Path, data: bytes) -> None:
        # Aside then renamed: two requests compressing the same chunk at once both end well.
        self.root.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=self.root, prefix=".partial-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
