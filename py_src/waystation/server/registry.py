"""Published bundles: their versions and chunks, and what each channel serves to each device.

Everything lives under the server's data folder:

    data/registry.sqlite3    versions (the exact manifest bytes), chunks, releases
    data/chunks/<sha256>     the chunks' bytes, immutable, shared by every version

or, when the server's state is in PostgreSQL (waystation.server.storage), in that database,
chunk bytes included (table chunk_bytes), so any instance serves what another published;
data/chunks is then each instance's cache of them (waystation.server.registry_chunks).

A channel ("stable", "beta", ...) of a bundle is a history of releases, each a version
rolled out to a percentage of devices. A device runs the newest release that includes it:
a release includes a device when `bucket(device, bundle, version) < percent`, a stable
hash, so the same device always gets the same answer, raising a percentage only adds
devices, and a device outside a new release keeps the release it had. Rolling back marks
the newest release rolled back: its devices return to the release before it. Halting is a
rollback that records why (a guarded release's `halt_if` rules broke, waystation.server.halt_rules).

A revoked version is never served again: resolve() skips its releases, so each of its devices
gets the release before it, and its check-in lists it so that a device holding it stops using it.

    registry = Registry(Path("data"))
    registry.publish(Path("build/bundles/digits/1.0.1"), channel="stable", percent=25)
    manifest = registry.resolve("digits", "stable", device="a1b2")   # bytes, or None
    registry.revoke("digits", "1.0.1", reason="wrong labels")
    registry.set_logging("digits", "stable", share=10, level="info")  # remote logs from 10% of devices
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..bundles._progress import BarFactory, no_bar
from ..bundles.chunks import ChunkStore
from ..device.errors import BundleError
from ..device.manifest import Manifest
from ..device.signature import TrustedKey, verify_manifest
from .registry_chunks import CHUNK_BYTES_TABLE, DatabaseChunkStore
from .storage import Connection, Migration, Storage

__all__ = ["LOG_LEVELS", "Registry", "Release", "bucket", "logging_bucket"]

# waystation.device.log.LEVELS: the levels a device may be asked to send its log lines from
LOG_LEVELS = ("debug", "info", "warning", "error")
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
CREATE TABLE IF NOT EXISTS logging (
    bundle TEXT NOT NULL,
    channel TEXT NOT NULL,
    share INTEGER NOT NULL CHECK (share BETWEEN 1 AND 100),
    level TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (bundle, channel)
);
"""
# On PostgreSQL every column is there from the start, and the bytes of chunks too (instances on
# other machines have no data/chunks of their own). "C" collation: names sort as on SQLite, by bytes.
_POSTGRES_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS versions (
    bundle TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    parent TEXT,
    manifest BYTEA NOT NULL,
    sha256 TEXT NOT NULL,
    published_at TEXT NOT NULL,
    revoked_at TEXT,
    revoke_reason TEXT,
    seq BIGSERIAL NOT NULL,
    PRIMARY KEY (bundle, version)
);
CREATE TABLE IF NOT EXISTS chunks (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {CHUNK_BYTES_TABLE} (
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    id BIGSERIAL PRIMARY KEY,
    bundle TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    percent INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    rolled_back_at TEXT,
    halted_at TEXT,
    halt_reason TEXT,
    halt_if TEXT,
    FOREIGN KEY (bundle, version) REFERENCES versions (bundle, version)
);
CREATE INDEX IF NOT EXISTS releases_by_channel ON releases (bundle, channel, id);
CREATE TABLE IF NOT EXISTS logging (
    bundle TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    share INTEGER NOT NULL CHECK (share BETWEEN 1 AND 100),
    level TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (bundle, channel)
);
"""
# Columns added after the first release of the schema: a registry made before them gains them on open.
_ADDED_COLUMNS = (
    ("versions", "revoked_at", "TEXT"),
    ("versions", "revoke_reason", "TEXT"),
    ("releases", "halted_at", "TEXT"),
    ("releases", "halt_reason", "TEXT"),
    ("releases", "halt_if", "TEXT"),
)

def _add_missing_columns(tx: Connection) -> None:
    """Bring a SQLite registry made by an earlier Waystation up to the current schema (columns only
    ever get added). PostgreSQL registries have them all from their first migration."""
    if tx.engine != "sqlite":
        return
    for table, column, kind in _ADDED_COLUMNS:
        have = {row[1] for row in tx.execute(f"PRAGMA table_info({table})")}
        if column in have:
            continue
        try:
            tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:  # an earlier Waystation opening the same old file added it first
            if "duplicate column" not in str(exc):
                raise


MIGRATIONS = (
    # The schema as it first shipped on SQLite (files made then open unchanged); all of it on PostgreSQL.
    Migration(1, sqlite=_SCHEMA, postgresql=_POSTGRES_SCHEMA),
    Migration(2, python=_add_missing_columns),  # revoke, halt and halt rules
)

_HISTORY_FIELDS = ("id", "channel", "version", "percent", "created_at", "updated_at", "rolled_back_at",
                   "halted_at", "halt_reason", "halt_if")


def bucket(device: str, bundle: str, version: str) -> int:
    """A device's stable place, 0-99, in the rollout of one bundle version."""
    digest = hashlib.sha256(f"{device}\0{bundle}\0{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def logging_bucket(device: str, bundle: str) -> int:
    """A device's stable place, 0-99, in the remote-logging share of a bundle: the same for every version,
    so raising the share only adds devices and an update does not move a device in or out."""
    return bucket(device, bundle, "logging")


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
    """The bundle registry of `data` (made on first use). Safe to share between processes, and on
    PostgreSQL between server instances: the changes that read before they write (a release, a
    rollback, a halt) hold a lock on their channel, so two instances never act on the same state."""

    def __init__(self, data: str | Path | Storage) -> None:
        self.storage = Storage.at(data)
        self.data = self.storage.data
        self.path = self.data / "registry.sqlite3"  # the SQLite file (unused on PostgreSQL)
        self.data.mkdir(parents=True, exist_ok=True)
        # A connection per transaction: the server's threads and the command line may all write the file.
        self.db = self.storage.database("registry", MIGRATIONS, foreign_keys=True, synchronous="FULL")
        self.chunks: ChunkStore = (ChunkStore(self.data / "chunks") if self.db.engine == "sqlite"
                                   else DatabaseChunkStore(self.data / "chunks", self.db))
        # The order versions were published in: SQLite's rowid, a sequence on PostgreSQL.
        self._published = "rowid" if self.db.engine == "sqlite" else "seq"

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
        with self.db.transaction() as db:
            # In hash order: concurrent publishers sharing chunks lock their rows in one order.
            db.executemany("INSERT INTO chunks (sha256, size) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING",
                           sorted(manifest.chunks().items()))
            # Another publisher may have got there since the check above: the row it wrote wins.
            db.execute("INSERT INTO versions (bundle, version, parent, manifest, sha256, published_at) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bundle, version) DO NOTHING",
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

    def release(
        self, bundle: str, version: str, channel: str, percent: int = 100, *, halt_if: str | None = None,
    ) -> Release:
        """Roll `version` out on `channel` to `percent` of devices: a new release, or the newest one's new percentage.

        `halt_if` guards the release with halt rules (waystation.server.halt_rules: "errors>1%,p95>1.5x"),
        checked against the release before it as devices report; None keeps the newest release's rules
        when only its percentage changes, "" removes them.
        """
        _check_channel(channel)
        if not 0 <= percent <= 100:
            raise ValueError(f"rollout percentage {percent} is not between 0 and 100")
        now = _now()
        with self.db.transaction(immediate=True) as db:
            _lock_channel(db, bundle, channel)
            # FOR SHARE: a revoke waits for this release, so none is made of a version revoked meanwhile.
            meta = db.execute("SELECT revoked_at, revoke_reason FROM versions WHERE bundle = ? AND version = ?"
                              + (" FOR SHARE" if db.engine == "postgresql" else ""), (bundle, version)).fetchone()
            if meta is None:
                raise BundleError(f"{bundle} {version} is not published: publish its built bundle first")
            if meta[0] is not None:
                raise BundleError(f"{bundle} {version} was revoked ({meta[1] or 'no reason given'}): "
                                  "a revoked version is never released again, publish a new version")
            newest = _newest(db, bundle, channel)
            if newest is not None and newest[1] == version:
                rules = newest[2] if halt_if is None else (halt_if or None)
                db.execute("UPDATE releases SET percent = ?, updated_at = ?, halt_if = ? WHERE id = ?",
                           (percent, now, rules, newest[0]))
            else:
                db.execute("INSERT INTO releases (bundle, channel, version, percent, created_at, updated_at, halt_if) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (bundle, channel, version, percent, now, now, halt_if or None))
        return Release(bundle, channel, version, percent)

    def rollback(self, bundle: str, channel: str) -> tuple[Release, Release]:
        """Withdraw the newest release of `channel`; return it and the release now newest."""
        _check_channel(channel)
        with self.db.transaction(immediate=True) as db:
            _lock_channel(db, bundle, channel)
            rows = db.execute("SELECT id, version, percent FROM releases WHERE bundle = ? AND channel = ? "
                              "AND rolled_back_at IS NULL ORDER BY id DESC LIMIT 2", (bundle, channel)).fetchall()
            if len(rows) < 2:
                what = "has no release" if not rows else f"has only {rows[0][1]}"
                raise BundleError(f"channel {channel!r} of {bundle!r} {what}: there is nothing to roll back to")
            db.execute("UPDATE releases SET rolled_back_at = ? WHERE id = ?", (_now(), rows[0][0]))
        return Release(bundle, channel, rows[0][1], rows[0][2]), Release(bundle, channel, rows[1][1], rows[1][2])

    def halt(self, bundle: str, channel: str, version: str, reason: str) -> tuple[Release, Release]:
        """Withdraw the release of `version` in force on `channel` because its halt rules broke, recording `reason`;
        return it and the release its devices go back to."""
        _check_channel(channel)
        with self.db.transaction(immediate=True) as db:
            _lock_channel(db, bundle, channel)
            rows = db.execute("SELECT id, version, percent FROM releases WHERE bundle = ? AND channel = ? "
                              "AND rolled_back_at IS NULL ORDER BY id DESC", (bundle, channel)).fetchall()
            at = next((i for i, row in enumerate(rows) if row[1] == version), None)
            if at is None:
                raise BundleError(f"channel {channel!r} of {bundle!r} has no release of {version} in force: nothing to halt")
            if at + 1 >= len(rows):
                raise BundleError(f"channel {channel!r} of {bundle!r} has no release before {version}: "
                                  "there is nothing to go back to")
            now = _now()
            db.execute("UPDATE releases SET rolled_back_at = ?, halted_at = ?, halt_reason = ? WHERE id = ?",
                       (now, now, reason, rows[at][0]))
        (_, halted, percent), (_, previous, previous_percent) = rows[at], rows[at + 1]
        return Release(bundle, channel, halted, percent), Release(bundle, channel, previous, previous_percent)

    def releases(self, bundle: str, channel: str) -> list[Release]:
        """The channel's releases in force, newest first (a revoked version's included: see resolve)."""
        with self.db.transaction() as db:
            rows = db.execute("SELECT version, percent FROM releases WHERE bundle = ? AND channel = ? "
                              "AND rolled_back_at IS NULL ORDER BY id DESC", (bundle, channel)).fetchall()
        return [Release(bundle, channel, version, percent) for version, percent in rows]

    def resolve(self, bundle: str, channel: str, device: str) -> bytes | None:
        """The manifest `device` should run from `channel`, as published; None if no release includes it.

        A revoked version's releases are skipped: its devices get the release before it."""
        version = self.resolve_version(bundle, channel, device)
        return None if version is None else self.manifest(bundle, version)

    def resolve_version(self, bundle: str, channel: str, device: str) -> str | None:
        """The version `device` should run from `channel` (never a revoked one), or None."""
        revoked = set(self.revoked(bundle))
        for release in self.releases(bundle, channel):
            if release.version not in revoked and release.includes(device):
                return release.version
        return None

    def revoke(self, bundle: str, version: str, reason: str = "") -> None:
        """Stop serving `version` anywhere, for good, and tell the devices holding it to stop using it.

        Revoking again keeps the first time and takes the new reason."""
        with self.db.transaction() as db:
            done = db.execute("UPDATE versions SET revoked_at = coalesce(revoked_at, ?), revoke_reason = ? "
                              "WHERE bundle = ? AND version = ?", (_now(), reason, bundle, version)).rowcount
        if not done:
            raise BundleError(f"{bundle} {version} is not published: there is nothing to revoke")

    def revoked(self, bundle: str) -> list[str]:
        """Every revoked version of `bundle`, in the order they were published."""
        with self.db.transaction() as db:
            rows = db.execute("SELECT version FROM versions WHERE bundle = ? AND revoked_at IS NOT NULL "
                              f"ORDER BY {self._published}", (bundle,)).fetchall()
        return [row[0] for row in rows]

    def withdrawn(self, bundle: str, channel: str) -> list[str]:
        """Versions `channel` served and no longer does: rolled back or halted, with no release of them in force."""
        with self.db.transaction() as db:
            rows = db.execute("SELECT DISTINCT version FROM releases WHERE bundle = ? AND channel = ? "
                              "AND rolled_back_at IS NOT NULL AND version NOT IN (SELECT version FROM releases "
                              "WHERE bundle = ? AND channel = ? AND rolled_back_at IS NULL) ORDER BY version",
                              (bundle, channel, bundle, channel)).fetchall()
        return [row[0] for row in rows]

    def history(self, bundle: str) -> list[dict[str, Any]]:
        """Every release of every channel of `bundle`, newest first, withdrawn and halted ones included."""
        with self.db.transaction() as db:
            rows = db.execute(f"SELECT {', '.join(_HISTORY_FIELDS)} FROM releases WHERE bundle = ? ORDER BY id DESC",
                              (bundle,)).fetchall()
        return [dict(zip(_HISTORY_FIELDS, row, strict=True)) for row in rows]

    def bundles(self) -> list[str]:
        """The names of every bundle with a published version, sorted."""
        with self.db.transaction() as db:
            return [row[0] for row in db.execute("SELECT DISTINCT bundle FROM versions ORDER BY bundle")]

    def versions(self, bundle: str) -> list[dict[str, Any]]:
        """Every published version of `bundle`, newest first: {version, parent, published_at, revoked_at, revoke_reason}."""
        fields = ("version", "parent", "published_at", "revoked_at", "revoke_reason")
        with self.db.transaction() as db:
            rows = db.execute(f"SELECT {', '.join(fields)} FROM versions WHERE bundle = ? "
                              f"ORDER BY {self._published} DESC",
                              (bundle,)).fetchall()
        return [dict(zip(fields, row, strict=True)) for row in rows]

    def set_logging(self, bundle: str, channel: str, share: int, level: str) -> None:
        """Ask `share` percent of the devices on `channel` to send their log lines at `level` and above; 0 stops it."""
        _check_channel(channel)
        if not 0 <= share <= 100:
            raise ValueError(f"logging share {share} is not a percentage between 0 and 100")
        if level not in LOG_LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
        with self.db.transaction() as db:
            if not db.execute("SELECT 1 FROM versions WHERE bundle = ? LIMIT 1", (bundle,)).fetchone():
                raise BundleError(f"no version of {bundle!r} is published: publish it before turning its logging on")
            if share == 0:
                db.execute("DELETE FROM logging WHERE bundle = ? AND channel = ?", (bundle, channel))
            else:
                db.execute("INSERT INTO logging (bundle, channel, share, level, updated_at) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT (bundle, channel) DO UPDATE SET share = excluded.share, level = excluded.level, "
                           "updated_at = excluded.updated_at",
                           (bundle, channel, share, level, _now()))

    def logging(self, bundle: str, channel: str) -> dict[str, Any] | None:
        """{share, level} of remote logging on `channel`, or None while it is off."""
        with self.db.transaction() as db:
            row = db.execute("SELECT share, level FROM logging WHERE bundle = ? AND channel = ?", (bundle, channel)).fetchone()
        return {"share": row[0], "level": row[1]} if row else None

    def logging_on(self, bundle: str) -> bool:
        """Whether remote logging is on for `bundle` on some channel."""
        with self.db.transaction() as db:
            return db.execute("SELECT 1 FROM logging WHERE bundle = ? LIMIT 1", (bundle,)).fetchone() is not None

    def guarded_rollouts(self) -> list[dict[str, Any]]:
        """Releases in force with halt rules and a release before them (also in force, not revoked) to go back to:
        {bundle, channel, version, percent, halt_if, previous}, the previous one's version."""
        with self.db.transaction() as db:
            rows = db.execute("SELECT r.bundle, r.channel, r.version, r.percent, r.halt_if, r.id FROM releases r "
                              "JOIN versions v ON v.bundle = r.bundle AND v.version = r.version "
                              "WHERE r.rolled_back_at IS NULL AND r.halt_if IS NOT NULL AND v.revoked_at IS NULL "
                              "ORDER BY r.bundle, r.channel, r.id DESC").fetchall()
            out = []
            for bundle, channel, version, percent, halt_if, release_id in rows:
                previous = db.execute(
                    "SELECT r.version FROM releases r JOIN versions v ON v.bundle = r.bundle AND v.version = r.version "
                    "WHERE r.bundle = ? AND r.channel = ? AND r.id < ? AND r.rolled_back_at IS NULL "
                    "AND v.revoked_at IS NULL AND r.version != ? ORDER BY r.id DESC LIMIT 1",
                    (bundle, channel, release_id, version)).fetchone()
                if previous:
                    out.append({"bundle": bundle, "channel": channel, "version": version, "percent": percent,
                                "halt_if": halt_if, "previous": previous[0]})
        return out

    def manifest(self, bundle: str, version: str) -> bytes | None:
        with self.db.transaction() as db:
            row = db.execute("SELECT manifest FROM versions WHERE bundle = ? AND version = ?", (bundle, version)).fetchone()
        return bytes(row[0]) if row else None

    def _version_sha(self, bundle: str, version: str) -> str | None:
        with self.db.transaction() as db:
            row = db.execute("SELECT sha256 FROM versions WHERE bundle = ? AND version = ?", (bundle, version)).fetchone()
        return row[0] if row else None


def _lock_channel(db: Connection, bundle: str, channel: str) -> None:
    """On PostgreSQL, hold until the transaction ends the lock on a channel's releases (SQLite's
    immediate transaction already holds the whole file's)."""
    if db.engine == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"waystation.registry {bundle} {channel}",))


def _newest(db: Connection, bundle: str, channel: str) -> tuple[int, str, str | None] | None:
    """(id, version, halt_if) of the channel's newest release in force."""
    row = db.execute("SELECT id, version, halt_if FROM releases WHERE bundle = ? AND channel = ? "
                     "AND rolled_back_at IS NULL ORDER BY id DESC LIMIT 1", (bundle, channel)).fetchone()
    return (row[0], row[1], row[2]) if row else None


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
