"""What an update costs: the chunks of bundle B a device holding bundle A must fetch.

A device keeps every chunk of the version it runs, so it fetches only B's chunks that A
lacks, each once however many files share it.

    diff = BundleDiff.between(Manifest.from_json(a), Manifest.from_json(b))
    print(diff.table())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device.manifest import Manifest

__all__ = ["BundleDiff", "FileDiff", "load_manifest"]


def load_manifest(path: Path) -> Manifest:
    """A manifest from a built bundle folder or a manifest file."""
    return Manifest.from_json((path / "manifest.json" if path.is_dir() else path).read_bytes())


@dataclass(frozen=True)
class FileDiff:
    path: str
    size: int
    chunks: int
    shared: int  # chunks the device already has
    new: int
    fetch: int  # bytes of new chunks, not counting those an earlier file already brings
    status: str  # same | changed | added

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class BundleDiff:
    a: Manifest
    b: Manifest
    files: list[FileDiff]
    removed: list[str]

    @classmethod
    def between(cls, a: Manifest, b: Manifest) -> BundleDiff:
        have = set(a.chunks())
        files = []
        for entry in b.files.values():
            new = [chunk for chunk in entry.chunks if chunk[0] not in have]
            old = a.files.get(entry.path)
            status = "added" if old is None else "same" if old.sha256 == entry.sha256 else "changed"
            fetch = sum(dict(new).values())  # a chunk repeated within the file is fetched once
            files.append(FileDiff(entry.path, entry.size, len(entry.chunks), len(entry.chunks) - len(new),
                                  len(new), fetch, status))
            have.update(sha for sha, _ in new)
        return cls(a, b, files, sorted(set(a.files) - set(b.files)))

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def fetch(self) -> int:
        return sum(f.fetch for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": {"name": self.a.name, "version": self.a.version},
            "to": {"name": self.b.name, "version": self.b.version},
            "files": [f.to_dict() for f in self.files],
            "removed": self.removed,
            "chunks": {"total": sum(f.chunks for f in self.files), "shared": sum(f.shared for f in self.files),
                       "new": sum(f.new for f in self.files)},
            "bytes": {"total": self.size, "fetch": self.fetch, "reused": self.size - self.fetch},
        }

    def table(self) -> str:
        rows = [("file", "status", "size", "chunks", "shared", "new", "fetch")]
        rows += [(f.path, f.status, _size(f.size), str(f.chunks), str(f.shared), str(f.new), _size(f.fetch))
                 for f in self.files]
        rows += [(path, "removed", "", "", "", "", "") for path in self.removed]
        totals = self.to_dict()["chunks"]
        rows.append(("total", "", _size(self.size), str(totals["total"]), str(totals["shared"]), str(totals["new"]),
                     _size(self.fetch)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        share = f" ({self.fetch / self.size:.0%})" if self.size else ""
        lines.append(f"\n{self.a.name} {self.a.version} -> {self.b.name} {self.b.version}: "
                     f"fetch {_size(self.fetch)} of {_size(self.size)}{share}")
        return "\n".join(line.rstrip() for line in lines)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:,.1f} KiB" if n < 1024**2 else f"{n / 1024**2:,.1f} MiB"
