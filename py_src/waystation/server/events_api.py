"""The event relay: devices send the relayable fields of their events; each is stored once.

    POST /api/events/{bundle}
    Authorization: Bearer <sync token>          (the account's token from /api/sync/login)
    Content-Encoding: gzip                       (optional)
    {"version": "1.0.0", "events": [{"table": "clicks", "id": "<32 hex>", "ts": 1767225600.5, "item_id": "a1"}, ...]}
    -> 200 {"stored": 1, "duplicates": 0}

The bundle version must be published (its manifest says which tables exist and which of
their fields may be relayed); an event with any other field is refused, and so is the whole
batch (400, naming the event, table and field). Sending a batch again stores nothing twice.
The body is bounded twice: as sent, by the server's body limit (max_body_bytes), and once
decompressed, by max_relay_bytes (413 past either). SQLite and decompression run off the
event loop.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ..device.data.schema import EventTable
from ..device.errors import BundleError, DataError
from ..device.manifest import Manifest
from ._json import BadJSON, parse_object
from .config import ServerConfig, env_name
from .events_store import EventLog
from .registry import Registry
from .storage import Storage
from .sync.auth import Accounts

__all__ = ["event_routes", "relayable_tables"]

_EVENT_ID = re.compile(r"[0-9a-f]{32}")
_VERSION = re.compile(r"[0-9A-Za-z.+-]{1,64}")
_CACHED_MANIFESTS = 256


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def relayable_tables(manifest: Manifest) -> dict[str, EventTable]:
    """The bundle's event tables that relay anything."""
    return {name: t for name, t in manifest.declarations.events.items() if t.relay}


def event_routes(data: Path | Storage, config: ServerConfig) -> list[BaseRoute]:
    log = EventLog(data)
    registry = Registry(data)
    accounts = Accounts(data)

    known: dict[tuple[str, str], dict[str, EventTable]] = {}

    def tables_of(bundle: str, version: str) -> dict[str, EventTable] | None:
        if (bundle, version) not in known:  # a published version never changes: parsed once
            raw = registry.manifest(bundle, version)
            if raw is None:
                return None
            if len(known) >= _CACHED_MANIFESTS:
                known.clear()
            known[(bundle, version)] = relayable_tables(Manifest.from_json(raw))
        return known[(bundle, version)]

    async def relay(request: Request) -> JSONResponse:
        bundle = request.path_params["bundle"]
        token = _bearer(request.headers.get("authorization", ""))
        user = await run_in_threadpool(accounts.user_for, token) if token else None
        if user is None:
            return _error(401, "relaying events needs a signed-in account: Authorization: Bearer <token>")
        body = await request.body()
        gzip = request.headers.get("content-encoding", "").lower() == "gzip"
        try:
            result = await run_in_threadpool(_store, log, tables_of, bundle, user, body, gzip, config.max_relay_bytes)
        except _Refused as exc:
            return _error(exc.status, str(exc))
        return JSONResponse(result)

    return [Route("/api/events/{bundle}", relay, methods=["POST"])]


def _store(
    log: EventLog, tables_of: Callable[[str, str], dict[str, EventTable] | None], bundle: str, user: str,
    body: bytes, gzip: bool, limit: int,
) -> dict[str, int]:
    raw = _inflate(body, limit) if gzip else body
    if len(raw) > limit:
        raise _Refused(413, f"the events body is larger than {limit} bytes ({env_name('max_relay_bytes')}); send smaller batches")
    try:
        payload = parse_object(raw)
    except BadJSON as exc:
        raise _Refused(400, str(exc)) from None
    version, events = payload.get("version"), payload.get("events")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise _Refused(400, "the body must have 'version': the bundle version the events come from")
    if not isinstance(events, list):
        raise _Refused(400, "the body must have 'events': an array of events")
    try:
        tables = tables_of(bundle, version)
    except BundleError as exc:
        raise _Refused(400, f"bundle {bundle!r} {version}: {exc}") from None
    if tables is None:
        raise _Refused(404, f"bundle {bundle!r} version {version!r} is not published here")
    checked = [_check(i, e, tables, bundle) for i, e in enumerate(events)]
    return log.add(bundle, user, checked)


def _check(index: int, event: Any, tables: dict[str, EventTable], bundle: str) -> dict[str, Any]:
    """The event if it holds only relayable fields of a relaying table, each of its declared type."""
    where = f"event {index}"
    if not isinstance(event, dict):
        raise _Refused(400, f"{where}: must be an object")
    name = event.get("table")
    table = tables.get(name) if isinstance(name, str) else None
    if table is None:
        raise _Refused(400, f"{where}: bundle {bundle!r} relays no event table {name!r}; it relays {sorted(tables)}")
    where = f"{where} of table {name!r}"
    if not isinstance(event.get("id"), str) or not _EVENT_ID.fullmatch(event["id"]):
        raise _Refused(400, f"{where}: 'id' must be 32 lowercase hex digits")
    try:
        table.columns["ts"].encode(event.get("ts"), f"{where}, field 'ts'")
        for field, value in event.items():
            if field in ("table", "id", "ts"):
                continue
            if field not in table.relay:
                raise _Refused(400, f"{where}: field {field!r} may not be relayed; the relayable fields are {list(table.relay)}")
            table.fields[field].encode(value, f"{where}, field {field!r}")
    except DataError as exc:
        raise _Refused(400, str(exc)) from None
    return event


def _inflate(body: bytes, limit: int) -> bytes:
    """Gunzip at most limit + 1 bytes: a small body that inflates hugely is refused, not expanded."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Refused(400, f"the body is not valid gzip: {exc}") from None
    if len(out) <= limit and not inflater.eof:
        raise _Refused(400, "the gzip body is truncated")
    return out


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})
