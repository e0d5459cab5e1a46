"""What an instance tells a load balancer and an operator about itself.

    GET /api/health        everything: version, database, pub/sub, draining. 200 when all of it
                           works, else 503 with the same body (for monitoring and people).
    GET /api/health/ready  whether to send this instance traffic: 200 unless it is draining
                           (shutting down). Never touches the database. For the load balancer.

Why two: a database or Redis outage hits every instance at once. If the load balancer took
instances out for it, it would take them all out together, and every request, static files
and the app shell included, would get the balancer's bare 503 until the outage ended (and then
all come back at once). Kept in, each instance still serves what needs no database, and answers
what does with its own clean 503 `database-unavailable` and `Retry-After`. What only one
instance can fix by leaving is that it is going away: that is what `/ready` reports.

The database ping runs on a thread of its own, one at a time, with a short timeout: a check
never blocks the event loop, never waits longer than `ping_timeout`, and a storm of checks
(or a hung database) costs one thread, not one per check. A ping is reused for `fresh` seconds.

    drain = Drain()
    routes = health_routes(ping=registry.db.ping, engine="postgresql", pubsub_status=None, drain=drain)
    app.state.drain = drain     # connections.serve() starts it on SIGTERM
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import __version__
from ._urls import redacted

__all__ = ["DatabaseCheck", "Drain", "health_routes"]

_NO_STORE = {"Cache-Control": "no-store"}


class Drain:
    """Whether this instance is on its way out: set once, on SIGTERM, and never cleared (the
    process exits at the end of it). While set, `/api/health/ready` answers 503 so the load
    balancer stops choosing the instance, and everything else is still served as usual."""

    def __init__(self) -> None:
        self.since: float | None = None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    @property
    def draining(self) -> bool:
        return self.since is not None

    def __call__(self) -> bool:
        return self.draining


class DatabaseCheck:
    """`ping` run on a thread of its own, at most one at a time, its answer kept `fresh` seconds."""

    def __init__(self, ping: Callable[[], None], *, timeout: float = 2.0, fresh: float = 1.0) -> None:
        self.ping, self.timeout, self.fresh = ping, timeout, fresh
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-ping")
        self._running: concurrent.futures.Future[None] | None = None
        self._last: tuple[float, str | None] | None = None  # (when, error or None)

    async def check(self) -> str | None:
        """None if the database answered, else why not."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.fresh:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = self._executor.submit(self.ping)
        running = self._running
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), self.timeout)
            error = None
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except Exception as exc:  # the storage's Unavailable, or anything else the driver raised
            error = str(exc).strip() or type(exc).__name__
        if running.done():  # a hung ping's verdict is not kept: the next check waits on it again
            self._last = (time.monotonic(), error)
        return error

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def health_routes(*, ping: Callable[[], None] | None, engine: str, drain: Callable[[], bool],
                  pubsub_status: Callable[[], Mapping[str, Any] | None] | None = None,
                  ping_timeout: float = 2.0) -> list[Route]:
    """`/api/health` and `/api/health/ready`.

    `ping` raises unless the database answers (None: nothing to check); `engine` names it
    ("sqlite", "postgresql"); `drain()` is true once the instance is shutting down;
    `pubsub_status()` is the pub/sub's own report, with a "connected" boolean (None, or a None
    answer: no pub/sub configured)."""
    database = DatabaseCheck(ping, timeout=ping_timeout) if ping is not None else None

    async def health(request: Request) -> JSONResponse:
        draining = drain()
        report: dict[str, Any] = {"waystation": __version__, "draining": draining}
        error = await database.check() if database is not None else None
        report["database"] = {"engine": engine, "ok": error is None, **({"error": error} if error else {})}
        status = _pubsub(pubsub_status)
        pubsub_ok = status is None or bool(status.get("connected"))
        report["pubsub"] = status
        ok = error is None and pubsub_ok and not draining
        return JSONResponse({"ok": ok, **report}, status_code=200 if ok else 503, headers=_NO_STORE)

    async def ready(request: Request) -> JSONResponse:
        if drain():
            return JSONResponse({"ready": False, "draining": True}, status_code=503, headers=_NO_STORE)
        return JSONResponse({"ready": True, "draining": False}, headers=_NO_STORE)

    return [Route("/api/health", health), Route("/api/health/ready", ready)]


def _pubsub(pubsub_status: Callable[[], Mapping[str, Any] | None] | None) -> dict[str, Any] | None:
    """The pub/sub's report, its URL without a password; None without a pub/sub."""
    if pubsub_status is None:
        return None
    try:
        found = pubsub_status()
    except Exception as exc:
        return {"connected": False, "error": str(exc) or type(exc).__name__}
    if found is None:
        return None
    status = dict(found)
    if isinstance(status.get("url"), str):
        status["url"] = redacted(status["url"])
    return status
