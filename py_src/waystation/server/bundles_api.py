"""The bundle API: which manifest a device should run, and the chunks manifests point at.

    GET /api/bundles/{name}/channels/{channel}?device=ID          the manifest, as published (ETag)
    GET /api/bundles/{name}/channels/{channel}/status?device=ID   the check-in (below)
    GET /chunks/{sha256}                                           a chunk, immutable

The check-in is what a device's background checks ask, small and never cached: the version it
should run and the sha256 of that manifest (it fetches the manifest only when that differs from
what it holds), every revoked version (it stops using one it holds), the versions this channel
withdrew (rolled back or halted: a device running one goes back to the version it held before,
whatever its page's update policy), whether it is inside the channel's remote-logging share, and
when to ask again:

    {"bundle": "digits", "channel": "stable", "version": "1.0.2", "sha256": "...",
     "revoked": ["1.0.1"], "withdrawn": ["1.0.3"], "logging": {"level": "info"} | null, "checkAfterSeconds": 900}

With `WAYSTATION_CHUNK_BASE_URL` set (the URL of a static folder holding `chunks/<sha256>`,
written by `waystation bundle publish --static-dir` and `waystation build`; docs/static-hosting.md),
the manifest and the check-in answers carry it as `Waystation-Chunk-Base: https://cdn.example.com/app/`
and the service worker fetches a release's chunks from `<base>chunks/<sha256>`, falling back to this
server's own `/chunks/` if that host fails. A header, not a field: the manifest's bytes are signed,
and the check-in's shape stays what every device knows. Without the setting there is no header and
chunks are fetched from the site's origin, as ever.

Chunks come from the registry's store (data/chunks), then from the built site's (dist/chunks),
so bundles built into the site need no publishing to be fetched by chunk. Both answers are
gzip-compressed for a client that accepts it, when that saves bytes (`_gzip`): a chunk's ETag
is then weak, the same bytes once decoded.

The registry's SQLite and the compression run on a few threads of the API's own, never on the
event loop: a registry locked by a publish, or a large chunk being compressed, delays only the
requests that need them, not every other socket of the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..bundles.chunks import ChunkStore
from ._gzip import GzipCache, accepts_gzip, compress
from .registry import Registry, logging_bucket
from .static_export import chunk_base_url

__all__ = ["CHECK_AFTER_SECONDS", "CHUNK_BASE_HEADER", "IMMUTABLE", "bundle_routes"]

IMMUTABLE = "public, max-age=31536000, immutable"
CHUNK_BASE_HEADER = "Waystation-Chunk-Base"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEVICE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# Threads for the bundle API's disk and CPU work. Few, and its own: a locked registry then ties
# up these and never the thread pool that other routes (accounts, static files) share.
_WORKERS = 4
# How long a device waits between check-ins while a page is open: a revoke or a halt reaches every
# open page within this, and a thousand open pages cost the server about one request a second.
CHECK_AFTER_SECONDS = 900
T = TypeVar("T")


def bundle_routes(registry: Registry, site: Path) -> list[BaseRoute]:
    """The routes, over `registry` and the chunks of the site built in `site`.

    `$WAYSTATION_CHUNK_BASE_URL` is read here, once: a malformed value stops the server at start.
    """
    base = chunk_base_url()
    where = {CHUNK_BASE_HEADER: base} if base else {}
    stores = [registry.chunks, ChunkStore(site / "chunks")]
    packed = GzipCache(registry.data / "chunks.gz")
    executor = ThreadPoolExecutor(_WORKERS, thread_name_prefix="waystation-bundles")

    async def off_loop(work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    def find_manifest(name: str, channel: str, device: str, gzip: bool) -> tuple[bytes, bytes | None] | None:
        manifest = registry.resolve(name, channel, device)
        if manifest is None:
            return None
        return manifest, compress(manifest) if gzip else None

    def check_in(name: str, channel: str, device: str) -> dict[str, Any] | None:
        revoked = registry.revoked(name)
        version = registry.resolve_version(name, channel, device)
        if version is None and not revoked and not registry.versions(name):
            return None
        manifest = registry.manifest(name, version) if version is not None else None
        logging = registry.logging(name, channel)
        inside = logging is not None and logging_bucket(device, name) < logging["share"]
        return {"bundle": name, "channel": channel, "version": version,
                "sha256": hashlib.sha256(manifest).hexdigest() if manifest is not None else None,
                "revoked": revoked, "withdrawn": registry.withdrawn(name, channel),
                "logging": {"level": logging["level"]} if logging and inside else None,
                "checkAfterSeconds": CHECK_AFTER_SECONDS}

    def find_chunk(sha256: str, gzip: bool) -> tuple[Path, bool] | None:
        for store in stores:
            path = store.path(sha256)
            if path.is_file():
                gz = packed.get(sha256, path) if gzip else None
                return (path, False) if gz is None else (gz, True)
        return None

    async def channel_manifest(request: Request) -> Response:
        name, channel = request.path_params["name"], request.path_params["channel"]
        device = request.query_params.get("device", "")
        if not _DEVICE.fullmatch(device):
            return _error(400, "?device= must be a device id of 1-128 letters, digits, '.', '_', ':' or '-'")
        found = await off_loop(lambda: find_manifest(name, channel, device, accepts_gzip(request.headers)))
        if found is None:
            return _error(404, f"no release of {name!r} on channel {channel!r} includes this device")
        manifest, body = found
        etag = f'"{hashlib.sha256(manifest).hexdigest()}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding", **where}
        if body is not None:
            headers.update(_GZIP, ETag=f"W/{etag}")
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(body or manifest, media_type="application/json", headers=headers)

    async def status(request: Request) -> Response:
        name, channel = request.path_params["name"], request.path_params["channel"]
        device = request.query_params.get("device", "")
        if not _DEVICE.fullmatch(device):
            return _error(400, "?device= must be a device id of 1-128 letters, digits, '.', '_', ':' or '-'")
        answer = await off_loop(lambda: check_in(name, channel, device))
        if answer is None:
            return _error(404, f"no version of bundle {name!r} is published")
        return JSONResponse(answer, headers={"Cache-Control": "no-store", **where})

    async def chunk(request: Request) -> Response:
        sha256 = request.path_params["sha256"]
        if not _SHA256.fullmatch(sha256):
            return _error(400, f"{sha256[:80]!r} is not a chunk address (64 lowercase hex digits)")
        found = await off_loop(lambda: find_chunk(sha256, accepts_gzip(request.headers)))
        if found is None:
            return _error(404, f"no chunk {sha256}")
        path, gzipped = found
        headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{sha256}"', "Vary": "Accept-Encoding"}
        if gzipped:
            headers = {**headers, **_GZIP, "ETag": f'W/"{sha256}"'}
        return FileResponse(path, media_type="application/octet-stream", headers=headers)

    return [
        Route("/api/bundles/{name}/channels/{channel}", channel_manifest),
        Route("/api/bundles/{name}/channels/{channel}/status", status),
        Route("/chunks/{sha256:path}", chunk),  # every path below /chunks/: malformed ones get a 400
    ]


_GZIP = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})
