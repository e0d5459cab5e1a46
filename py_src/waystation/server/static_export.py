"""Chunks for a static host: a built bundle's chunks written to `DIR/chunks/<sha256>`, and the
server setting that points devices at wherever DIR is served (docs/static-hosting.md).

    waystation build --out DIR                                             the site, its own chunks
    waystation bundle publish BUILT --channel stable --static-dir DIR      a release's chunks
    WAYSTATION_CHUNK_BASE_URL=https://cdn.example.com/app/ waystation serve   devices fetch DIR's copy

Chunks are immutable and named by their SHA-256, so DIR can be synced to any static server or
CDN as plain files, with no server logic: every device checks each chunk's hash before storing
it, so a host that serves the wrong bytes is detected (and the device falls back to the instance).

The export is idempotent: a chunk already in DIR with the right bytes is left alone (its mtime too,
so a sync tool sends nothing again); one with other bytes (a torn copy, a bad disk) is replaced,
and said so, since a CDN that cached it must be purged. Writes go to a temporary file beside the
chunk and are renamed into place, so a sync running meanwhile never picks up half a chunk under
its final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..bundles._progress import BarFactory, no_bar
from ..bundles.chunks import split_at
from ..device.errors import BundleError
from ..device.manifest import Manifest

__all__ = ["CHUNK_BASE_ENV", "Export", "chunk_base_url", "chunk_origin", "export_chunks"]

CHUNK_BASE_ENV = "WAYSTATION_CHUNK_BASE_URL"
# Left by a write cut short; a sync tool may be told to skip them (docs/static-hosting.md).
PARTIAL_PREFIX = ".partial-"


@dataclass
class Export:
    """What an export did: chunks written, already there, and replaced (they had other bytes)."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    bytes_written: int = 0

    def summary(self, folder: Path) -> str:
        text = (f"{len(self.written)} chunks ({self.bytes_written / 1024:.1f} KiB) written to {folder}, "
                f"{len(self.kept)} already there")
        if self.replaced:
            text += (f"; {len(self.replaced)} held other bytes and were replaced: purge them from any CDN cache "
                     f"({', '.join(sha[:16] for sha in self.replaced[:5])}{', ...' if len(self.replaced) > 5 else ''})")
        return text


def export_chunks(bundle_dir: Path, static_dir: Path, *, bar: BarFactory = no_bar,
                  warn: Callable[[str], None] | None = None) -> Export:
    """Write every chunk of the built bundle in `bundle_dir` to `static_dir/chunks/<sha256>`.

    Each file is checked against the manifest (size, SHA-256, then every chunk's hash) before a
    byte is written, so only the bytes devices will accept reach the static folder. `warn` hears
    of each existing chunk that held other bytes and was replaced.
    """
    manifest_path = bundle_dir / "manifest.json"
    manifest = Manifest.from_json(_read(manifest_path))
    folder = static_dir / "chunks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"--static-dir {static_dir}: cannot create {folder}: {exc.strerror}") from None
    done = Export()
    seen: set[str] = set()
    meter = bar(sum(entry.size for entry in manifest.files.values()), f"exporting {manifest.name} {manifest.version}")
    try:
        for entry in manifest.files.values():
            data = _read(bundle_dir / entry.path)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise BundleError(f"{bundle_dir}: file {entry.path!r} does not match its size or sha256 in the manifest")
            try:
                pieces = split_at(data, entry.chunks)
            except BundleError as exc:
                raise BundleError(f"{bundle_dir}: file {entry.path!r}: {exc}") from None
            for sha256, piece in pieces:
                if sha256 not in seen:
                    seen.add(sha256)
                    _export_one(folder, sha256, piece, done, warn)
            meter.update(entry.size)
    finally:
        meter.close()
    return done


def _export_one(folder: Path, sha256: str, piece: memoryview, done: Export, warn: Callable[[str], None] | None) -> None:
    target = folder / sha256
    existing = _existing(target)
    if existing == sha256:
        done.kept.append(sha256)
        return
    if existing is not None:
        done.replaced.append(sha256)
        if warn is not None:
            warn(f"{target} held other bytes (sha256 {existing[:16]}...): replaced; purge it from any CDN cache")
    _write_atomically(target, piece)
    done.written.append(sha256)
    done.bytes_written += len(piece)


def _existing(target: Path) -> str | None:
    """The SHA-256 of what `target` holds, or None when there is no file (a folder there is refused)."""
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise BundleError(f"{target} is a folder, not a chunk: remove it") from None
    except OSError as exc:
        raise BundleError(f"{target} cannot be read: {exc.strerror}") from None
    return hashlib.sha256(data).hexdigest()


def _write_atomically(target: Path, data: memoryview) -> None:
    """Written aside, flushed to disk, then renamed: the name only ever holds the whole chunk."""
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=PARTIAL_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(partial, 0o644)  # a static server runs as another user: the chunk must be world-readable
        os.replace(partial, target)
    except BaseException as exc:
        Path(partial).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BundleError(f"{target} cannot be written: {exc.strerror}") from None
        raise


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path} cannot be read: {exc.strerror}") from None


def chunk_base_url(environ: Mapping[str, str] | None = None) -> str | None:
    """`$WAYSTATION_CHUNK_BASE_URL`, checked and ending in "/", or None when unset (same origin).

    It is the URL of the static folder that holds `chunks/`: a device fetches
    `<base>chunks/<sha256>`, just as it resolves `chunks/<sha256>` against its own scope by default.
    A bad value stops the server at start: devices would otherwise fail every update.
    """
    value = (os.environ if environ is None else environ).get(CHUNK_BASE_ENV, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{CHUNK_BASE_ENV}={value!r}: give an absolute http(s) URL, e.g. https://cdn.example.com/app/")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{CHUNK_BASE_ENV}={value!r}: no query, fragment or user name; just the folder's URL")
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{CHUNK_BASE_ENV}={value!r}: the port is not a number") from None
    return value if value.endswith("/") else value + "/"


def chunk_origin(base: str) -> str:
    """The origin of a chunk base URL, as a CSP source (`https://cdn.example.com`)."""
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}".lower()
