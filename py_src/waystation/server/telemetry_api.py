"""Devices' telemetry reports and remote log lines (docs/fleet.md, "Telemetry on the server").

    POST /api/telemetry   a report (telemetry_checks.py): 202 {"accepted": true}, 200 {"duplicate": true}
    POST /api/logs        log lines of a bundle whose remote logging is on: 202, 200 duplicate, 403 off

Both are unauthenticated (devices are anonymous) and refuse, with {"error"} naming the field:
400 a body out of shape, 413 past telemetry_report_bytes / log_upload_bytes (BodyLimit),
422 a bundle version the registry does not hold (nothing of the report is stored), 429 with
Retry-After past telemetry_reports_per_minute from one address (both routes share the budget),
503 with Retry-After when the store cannot take it now (SQLite: a lock held too long, a full disk;
PostgreSQL: down, or no connection free in time).

Parsing, checking and storing run on one thread of the API's own: SQLite sees a single writer
(no waiting on its lock), and the event loop only counts the address's budget and hands the
body over. On PostgreSQL each instance has its own writer thread; the store's upserts make
their reports add up (telemetry_store.py). Halt checks (rollout_guard.py) run on another thread, so a slow check never delays
an ingest.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..device.errors import BundleError
from ..device.manifest import Manifest
from ._json import BadJSON, parse_object
from .config import ServerConfig
from .registry import Registry
from .rollout_guard import RolloutGuard
from .storage import Storage, Unavailable
from .sync.errors import RetryLater
from .sync.throttle import LoginThrottle
from .telemetry_checks import Declared, Refused, check_against_manifest, check_report, check_upload
from .telemetry_store import LogStore, TelemetryStore

__all__ = ["telemetry_routes"]

T = TypeVar("T")
_log = logging.getLogger("waystation.server.telemetry")
_CACHED_MANIFESTS = 256
_NO_STORE = {"Cache-Control": "no-store"}
_BUSY_RETRY_SECONDS = 30
_COMPACT_EVERY = 600.0  # seconds between foldings of old minutes and hours (telemetry_store.compact)


class _Intake:
    """The blocking half: parse, check against the registry, store. Runs on the writer thread."""

    def __init__(self, registry: Registry, store: TelemetryStore, logs: LogStore) -> None:
        self.registry, self.store, self.logs = registry, store, logs
        self._declared: dict[tuple[str, str], Declared] = {}

    def report(self, body: bytes) -> tuple[bool, set[tuple[str, str]]]:
        """(stored, the report's (bundle, version) pairs); stored is False for an id stored before."""
        report = check_report(_parse(body))
        for i, entry in enumerate(report["bundles"]):
            check_against_manifest(entry, i, self.declared(entry["bundle"], entry["version"]))
        return self.store.ingest(report), {(e["bundle"], e["version"]) for e in report["bundles"]}

    def upload(self, body: bytes) -> bool:
        upload = check_upload(_parse(body))
        bundle, version = upload["bundle"], upload["version"]
        if not self.registry.logging_on(bundle):
            raise Refused(403, f"remote logging is off for bundle {bundle!r}")
        self.declared(bundle, version)
        return self.logs.add(upload)

    def declared(self, bundle: str, version: str) -> Declared:
        """The models and signals of a published version; Refused(422) if it is not published."""
        if (bundle, version) not in self._declared:  # a published manifest never changes: parsed once
            raw = self.registry.manifest(bundle, version)
            if raw is None:
                raise Refused(422, f"no published version {version} of bundle {bundle!r}")
            try:
                manifest = Manifest.from_json(raw)
                signals = {name: len(s.reference) for name, s in manifest.telemetry.signals.items()}
            except BundleError as exc:
                raise Refused(422, f"bundle {bundle!r} {version}: its manifest is unreadable here: {exc}") from None
            if len(self._declared) >= _CACHED_MANIFESTS:
                self._declared.clear()
            self._declared[(bundle, version)] = Declared(frozenset(manifest.models), signals)
        return self._declared[(bundle, version)]


def telemetry_routes(data: Path | Storage, config: ServerConfig, registry: Registry | None = None) -> list[BaseRoute]:
    """The two routes, storing under `data`, within `config`'s limits."""
    registry = registry or Registry(data)
    store = TelemetryStore(data)
    intake = _Intake(registry, store, LogStore(data))
    writer = ThreadPoolExecutor(1, thread_name_prefix="waystation-telemetry")
    guard = RolloutGuard(registry, store, ThreadPoolExecutor(1, thread_name_prefix="waystation-rollouts"))
    # The login throttle's address budget, alone: a token bucket per address, bounded memory.
    budget = LoginThrottle(per_minute=config.telemetry_reports_per_minute, free_failures=0, max_delay=0)

    async def off_loop(work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(writer, work)

    async def receive(request: Request, work: Callable[[bytes], T]) -> T | Response:
        try:
            budget.check(request.client.host if request.client else "unknown")
        except RetryLater as exc:
            return _error(429, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        body = await request.body()
        try:
            return await off_loop(lambda: work(body))
        except Refused as exc:
            return _error(exc.status, str(exc))
        except (sqlite3.OperationalError, Unavailable) as exc:  # locked past its timeout, the disk, PostgreSQL down
            _log.warning("telemetry not stored: %s", exc)
            return _error(503, f"the server could not store this now ({exc}): send it again later",
                          {"Retry-After": str(_BUSY_RETRY_SECONDS)})

    compacted_at: list[float] = []  # when the store was last compacted (monotonic), once it has been

    async def telemetry(request: Request) -> Response:
        result = await receive(request, intake.report)
        if isinstance(result, Response):
            return result
        stored, versions = result
        if not stored:
            return JSONResponse({"duplicate": True}, headers=_NO_STORE)
        guard.reported(versions)
        if not compacted_at or time.monotonic() - compacted_at[0] >= _COMPACT_EVERY:
            compacted_at[:] = [time.monotonic()]
            # On the writer thread, after this report: no ingest waits on SQLite's lock for it.
            writer.submit(_compact, store, config.telemetry_keep_days)
        return JSONResponse({"accepted": True}, status_code=202, headers=_NO_STORE)

    async def logs(request: Request) -> Response:
        result = await receive(request, intake.upload)
        if isinstance(result, Response):
            return result
        if not result:
            return JSONResponse({"duplicate": True}, headers=_NO_STORE)
        return JSONResponse({"accepted": True}, status_code=202, headers=_NO_STORE)

    return [Route("/api/telemetry", telemetry, methods=["POST"]), Route("/api/logs", logs, methods=["POST"])]


def _compact(store: TelemetryStore, keep_days: float) -> None:
    try:
        done = store.compact(keep_days=keep_days)
    except Exception:
        _log.exception("compacting the telemetry store failed")
        return
    _log.info("telemetry compacted: %d rows folded into hours, %d forgotten", done["folded"], done["forgotten"])


def _parse(body: bytes) -> dict[str, Any]:
    try:
        return parse_object(body)
    except BadJSON as exc:
        raise Refused(400, str(exc)) from None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**_NO_STORE, **(headers or {})})
