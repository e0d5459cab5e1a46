"""Published bundles: their versions and chunks, and what each channel serves to each device.

Everything lives under the server's data folder:

    data/registry.sqlite3    versions (the exact manifest bytes), chunks, releases
    data/chunks/<sha256>     the chunks' bytes, immutable, shared by every version

A channel ("stable", "beta", ...) of a bundle is a history of releases, each a version
rolled out to a percentage of devices. A device runs the newest release that includes it:
a release includes a device when `bucket(device, bundle, version) < percent`, a stable
hash, so the same device always gets the same answer, raising a percentage only adds
devices, and a device outside a new release keeps the release it had. Rolling back marks
the newest release rolled back: its devices return to the release before it.

    registry = Registry(Path("data"))
    registry.publish(Path("build/bundles/digits/1.0.1"), channel="stable", percent=25)
    manifest = registry.resolve("digits", "stable", device="a1b2")   # bytes, or None
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..bundles._progress import BarFactory, no_bar
from ..bundles.chunks import ChunkStore
from ..device.errors import BundleError
from ..device.manifest import Manifest
from ..device.signature import TrustedKey, verify_manifest
from ._sqlite import transaction

__all__ = ["Registry", "Release", "bucket"]

_CHANNEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    bundle TEXT NOT NULL,
    version TEXT NOT NULL,
    parent TEXT,
    manifest BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    published_at TEXT NOT NULL,
    PRIMARY KEY (bundle, version)
);
CREATE TABLE IF NOT EXISTS chunks (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bundle TEXT NOT NULL,
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    percent INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    rolled_back_at TEXT,
    FOREIGN KEY (bundle, version) REFERENCES versions (bundle, version)
);
CREATE INDEX IF NOT EXISTS releases_by_channel ON releases (bundle, channel, id);
"""


def bucket(device: str, bundle: str, version: str) -> int:
    """A device's stable place, 0-99, in the rollout of one bundle version."""
    digest = hashlib.sha256(f"{device}\0{bundle}\0{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class Release:
    bundle: str
    channel: str
    version: str
    percent: int

    def includes(self, device: str) -> bool:
        return self.percent >= 100 or bucket(device, self.bundle, self.version) < self.percent

    def __str__(self) -> str:
        return f"{self.bundle} {self.version} on {self.channel} at {self.percent}%"


class Registry:
    """The bundle registry in `data/` (made on first use). Safe to share between processes."""

    def __init__(self, data: str | Path) -> None:
        self.data = Path(data)
        self.path = self.data / "registry.sqlite3"
        self.chunks = ChunkStore(self.data / "chunks")
        self.data.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        """One connection per operation, one transaction: the server and the CLI may both write."""
        return transaction(self.path, foreign_keys=True)

    def publish(
        self, bundle_dir: Path, channel: str, percent: int = 100, *,
        trusted_keys: Iterable[TrustedKey] | None = None, bar: BarFactory = no_bar,
    ) -> Release:
        """Add a built bundle (if new) and release it on `channel` to `percent` of devices."""
        manifest = self.add_version(bundle_dir, trusted_keys=trusted_keys, bar=bar)
        return self.release(manifest.name, manifest.version, channel, percent)

    def add_version(
        self, bundle_dir: Path, *, trusted_keys: Iterable[TrustedKey] | None = None, bar: BarFactory = no_bar,
    ) -> Manifest:
        """Check a built bundle (signature, files, chunks), store its chunks and record its manifest."""
        text = _read(bundle_dir / "manifest.json")
        manifest = Manifest.from_json(text)
        if manifest.signature is None:
            raise BundleError(f"{bundle_dir}: the manifest is not signed; build it with a key before publishing")
        if trusted_keys is not None:
            verify_manifest(manifest, trusted_keys)
        sha = hashlib.sha256(text).hexdigest()
        known = self._version_sha(manifest.name, manifest.version)
        if known == sha:
            return manifest  # the same bytes again: nothing to do
        if known is not None:
            self._refuse_other(manifest)
        self._store_chunks(bundle_dir, manifest, bar)
        with self._db() as db:
            db.executemany("INSERT OR IGNORE INTO chunks (sha256, size) VALUES (?, ?)", manifest.chunks().items())
            # Another publisher may have got there since the check above: the row it wrote wins.
            db.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bundle, version) DO NOTHING",
                       (manifest.name, manifest.version, manifest.parent, text, sha, _now()))
        if self._version_sha(manifest.name, manifest.version) != sha:
            self._refuse_other(manifest)
        return manifest

    def _refuse_other(self, manifest: Manifest) -> None:
        """A version is immutable once published: say so, and what differs from the published one."""
        published = Manifest.from_json(self.manifest(manifest.name, manifest.version) or b"")
        was = {path: f.sha256 for path, f in published.files.items()}
        now = {path: f.sha256 for path, f in manifest.files.items()}
        changed = sorted(p for p in set(was) | set(now) if was.get(p) != now.get(p))
        what = f"files that differ: {', '.join(changed)}" if changed else (
            "same files, other fields" if published.payload != manifest.payload else "same content, signed or laid out otherwise")
        raise BundleError(f"{manifest.name} {manifest.version} is already published with another manifest ({what}): "
                          "published versions never change, bump the version")

    def _store_chunks(self, bundle_dir: Path, manifest: Manifest, bar: BarFactory) -> None:
        meter = bar(sum(entry.size for entry in manifest.files.values()), f"publishing {manifest.name} {manifest.version}")
        try:
            for entry in manifest.files.values():
                data = _read(bundle_dir / entry.path)
                if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise BundleError(f"{bundle_dir}: file {entry.path!r} does not match its size or sha256 in the manifest")
                self.chunks.put_file(data, entry.chunks)
                meter.update(entry.size)
        finally:
            meter.close()

    def release(self, bundle: str, version: str, channel: str, percent: int = 100) -> Release:
        """Roll `version` out on `channel` to `percent` of devices: a new release, or the newest one's new percentage."""
        _check_channel(channel)
        if not 0 <= percent <= 100:
            raise ValueError(f"rollout percentage {percent} is not between 0 and 100")
        if self._version_sha(bundle, version) is None:
            raise BundleError(f"{bundle} {version} is not published: publish its built bundle first")
        now = _now()
        with self._db() as db:
            newest = _newest(db, bundle, channel)
            if newest is not None and newest[1] == version:
                db.execute("UPDATE releases SET percent = ?, updated_at = ? WHERE id = ?", (percent, now, newest[0]))
            else:
                db.execute("INSERT INTO releases (bundle, channel, version, percent, created_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (bundle, channel, version, percent, now, now))
        return Release(bundle, channel, version, percent)

    def rollback(self, bundle: str, channel: str) -> tuple[Release, Release]:
        """Withdraw the newest release of `channel`; return it and the release now newest."""
        _check_channel(channel)
        with self._db() as db:
            rows = db.execute("SELECT id, version, percent FROM releases WHERE bundle = ? AND channel = ? "
                              "AND rolled_back_at IS NULL ORDER BY id DESC LIMIT 2", (bundle, channel)).fetchall()
            if len(rows) < 2:
                what = "has no release" if not rows else f"has only {rows[0][1]}"
                raise BundleError(f"channel {channel!r} of {bundle!r} {what}: there is nothing to roll back to")
            db.execute("UPDATE releases SET rolled_back_at = ? WHERE id = ?", (_now(), rows[0][0]))
        return Release(bundle, channel, rows[0][1], rows[0][2]), Release(bundle, channel, rows[1][1], rows[1][2])

    def releases(self, bundle: str, channel: str) -> list[Release]:
        """The channel's releases in force, newest first."""
        with self._db() as db:
            rows = db.execute("SELECT version, percent FROM releases WHERE bundle = ? AND channel = ? "
                              "AND rolled_back_at IS NULL ORDER BY id DESC", (bundle, channel)).fetchall()
        return [Release(bundle, channel, version, percent) for version, percent in rows]

    def resolve(self, bundle: str, channel: str, device: str) -> bytes | None:
        """The manifest `device` should run from `channel`, as published; None if no release includes it."""
        for release in self.releases(bundle, channel):
            if release.includes(device):
                return self.manifest(bundle, release.version)
        return None

    def manifest(self, bundle: str, version: str) -> bytes | None:
        with self._db() as db:
            row = db.execute("SELECT manifest FROM versions WHERE bundle = ? AND version = ?", (bundle, version)).fetchone()
        return bytes(row[0]) if row else None

    def _version_sha(self, bundle: str, version: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT sha256 FROM versions WHERE bundle = ? AND version = ?", (bundle, version)).fetchone()
        return row[0] if row else None


def _newest(db: sqlite3.Connection, bundle: str, channel: str) -> tuple[int, str] | None:
    row = db.execute("SELECT id, version FROM releases WHERE bundle = ? AND channel = ? AND rolled_back_at IS NULL "
                     "ORDER BY id DESC LIMIT 1", (bundle, channel)).fetchone()
    return (row[0], row[1]) if row else None


def _check_channel(channel: str) -> None:
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"channel name {channel!r} must be lowercase letters, digits, '-' or '_' (e.g. stable, beta)")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path} cannot be read: {exc.strerror}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
