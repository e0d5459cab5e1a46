"""The admin API behind the fleet dashboard (/dashboard): what every bundle's channels serve and
how its versions do, and the release controls. Every route needs `Authorization: Bearer TOKEN`
with a token from `waystation admin token` (401 without one, or while none exists; 403 for a
wrong one).

    GET  /api/admin/bundles                                          every bundle: versions, channels, releases
    GET  /api/admin/bundles/{name}?hours=48                          the same for one, with telemetry and logs
    POST /api/admin/bundles/{name}/channels/{channel}/rollout        {"version": "1.0.2", "percent": 25}
    POST /api/admin/bundles/{name}/channels/{channel}/rollback       {}
    POST /api/admin/bundles/{name}/channels/{channel}/logging        {"share": 10, "level": "info"}
    POST /api/admin/bundles/{name}/versions/{version}/revoke         {"reason": "wrong labels"}

One bundle's "telemetry" is {"hours", "summary", "timeline", "logs"}: TelemetryStore.summary (every
version's devices, calls, error rate, p50/p95/p99, signals with PSI), its hourly timeline over the
last `hours`, and LogStore.recent (the newest remote log lines first).

The controls call the same Registry methods as `waystation bundle ...`, so the dashboard and the
command line can never disagree on what a release is. A control answers the bundle as it is
afterwards (the same object as GET /api/admin/bundles/{name}, without telemetry); an error is
{"error": message}: 400 for a malformed request, 404 for an unknown bundle or version, 409 for
a control the registry's state refuses (nothing to roll back to, a revoked version).

SQLite (registry, tokens, telemetry) runs on the API's own threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..device.errors import BundleError
from ._json import BadJSON, fields, json_object
from .admin_auth import AdminTokens
from .registry import Registry
from .storage import Storage
from .telemetry_store import LogStore, TelemetryStore

__all__ = ["admin_routes", "bundle_overview", "rollout_shares"]

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
_WORKERS = 2  # admin requests are few: an operator's browser every few seconds
_MAX_HOURS = 24 * 31
_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_LINES = 200  # the newest remote log lines shown with a bundle


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def admin_routes(registry: Registry, data: Path | Storage, site: Path) -> list[BaseRoute]:
    """The admin routes over `registry` and the telemetry and logs under `data`, and /dashboard from `site`."""
    tokens = AdminTokens(data)
    telemetry, logs = TelemetryStore(data), LogStore(data)
    executor = ThreadPoolExecutor(_WORKERS, thread_name_prefix="waystation-admin")

    async def off_loop(work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    def guarded(handler: Callable[[Request], Awaitable[Any]]) -> Handler:
        """`handler` behind the token check, its value as JSON, its refusals as {"error"}."""
        async def endpoint(request: Request) -> Response:
            token = _bearer(request.headers.get("authorization", ""))
            verdict = await off_loop(lambda: tokens.check(token)) if token else "none"
            if verdict != "ok":
                return _error(*_AUTH_ERRORS[verdict if token else "missing"])
            try:
                return JSONResponse(await handler(request), headers=_NO_STORE)
            except BadJSON as exc:
                return _error(400, str(exc))
            except _Refused as exc:
                return _error(exc.status, str(exc))
        return endpoint

    def known(name: str) -> None:
        if name not in registry.bundles():
            raise _Refused(404, f"no bundle {name!r} is published")

    def known_version(name: str, version: str) -> None:
        known(name)
        if not any(v["version"] == version for v in registry.versions(name)):
            raise _Refused(404, f"{name} {version} is not published")

    def control(check: Callable[[], None], change: Callable[[], object], name: str) -> dict[str, Any]:
        """Run `change` after `check`; the registry's refusals become 409 (state) or 400 (values)."""
        check()
        try:
            change()
        except BundleError as exc:
            raise _Refused(409, str(exc)) from None
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None
        return bundle_overview(registry, name)

    async def bundles(request: Request) -> dict[str, Any]:
        return {"bundles": await off_loop(lambda: [bundle_overview(registry, n) for n in registry.bundles()])}

    async def bundle(request: Request) -> dict[str, Any]:
        name = request.path_params["name"]
        hours = _hours(request.query_params.get("hours", "48"))

        def read() -> dict[str, Any]:
            known(name)
            return {**bundle_overview(registry, name), "telemetry": {
                "hours": hours, "summary": telemetry.summary(name), "timeline": telemetry.timeline(name, hours=hours),
                "logs": logs.recent(name, limit=_LOG_LINES)}}
        return await off_loop(read)

    async def rollout(request: Request) -> dict[str, Any]:
        name, channel = request.path_params["name"], request.path_params["channel"]
        body = await json_object(request)
        version, percent = fields(body, version=str, percent=int)
        halt_if = body.get("haltIf")
        if halt_if is not None and not isinstance(halt_if, str):
            raise BadJSON("'haltIf' must be a string of halt rules (e.g. \"errors>1%,devices>=10\") or absent")
        options = {} if halt_if is None else {"halt_if": halt_if}
        return await off_loop(lambda: control(lambda: known_version(name, version),
                                              lambda: registry.release(name, version, channel, percent, **options), name))

    async def rollback(request: Request) -> dict[str, Any]:
        name, channel = request.path_params["name"], request.path_params["channel"]
        return await off_loop(lambda: control(lambda: known(name), lambda: registry.rollback(name, channel), name))

    async def logging(request: Request) -> dict[str, Any]:
        name, channel = request.path_params["name"], request.path_params["channel"]
        share, level = fields(await json_object(request), share=int, level=str)
        if level not in _LOG_LEVELS:
            raise BadJSON(f"'level' must be one of {', '.join(_LOG_LEVELS)}, not {level[:40]!r}")
        return await off_loop(lambda: control(lambda: known(name),
                                              lambda: registry.set_logging(name, channel, share, level), name))

    async def revoke(request: Request) -> dict[str, Any]:
        name, version = request.path_params["name"], request.path_params["version"]
        body = await json_object(request)
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            raise BadJSON("'reason' must be a string of at most 500 characters")
        return await off_loop(lambda: control(lambda: known_version(name, version),
                                              lambda: registry.revoke(name, version, reason), name))

    async def dashboard(request: Request) -> Response:
        # Served from the site, never precached: the admin page is for the network, not the offline app.
        return FileResponse(site / "dashboard.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    base = "/api/admin/bundles/{name}"
    return [
        Route("/dashboard", dashboard),
        Route("/api/admin/bundles", guarded(bundles)),
        Route(base, guarded(bundle)),
        Route(base + "/channels/{channel}/rollout", guarded(rollout), methods=["POST"]),
        Route(base + "/channels/{channel}/rollback", guarded(rollback), methods=["POST"]),
        Route(base + "/channels/{channel}/logging", guarded(logging), methods=["POST"]),
        Route(base + "/versions/{version}/revoke", guarded(revoke), methods=["POST"]),
    ]


def bundle_overview(registry: Registry, name: str) -> dict[str, Any]:
    """One bundle as the dashboard shows it: versions (revoked or not), and per channel its
    releases newest first, the share of devices each version in force gets, and remote logging."""
    versions = registry.versions(name)
    revoked = {v["version"] for v in versions if v.get("revoked_at")}
    history = registry.history(name)
    channels: dict[str, list[dict[str, Any]]] = {}
    for release in history:  # newest first
        channels.setdefault(release["channel"], []).append(release)
    return {
        "name": name,
        "versions": versions,
        "channels": [
            {"channel": channel, "releases": releases, "logging": registry.logging(name, channel),
             "shares": rollout_shares(releases, revoked)}
            for channel, releases in sorted(channels.items())
        ],
        "halted": [r for r in history if r.get("halted_at")],
    }


def rollout_shares(releases: list[dict[str, Any]], revoked: set[str]) -> list[dict[str, Any]]:
    """The expected share (percent) of devices on each version in force, newest release first.

    A device runs the newest release that includes it (Registry.resolve), and each release's
    buckets are an independent hash per version, so a release of P% takes P% of the devices the
    newer ones left. Revoked versions are skipped, as resolve skips them; what no release takes
    is {"version": None}: devices that get no manifest from this channel.
    """
    left, shares = 100.0, []
    for release in releases:
        if release.get("rolled_back_at") or release.get("halted_at") or release["version"] in revoked:
            continue
        taken = left * release["percent"] / 100
        shares.append({"version": release["version"], "percent": release["percent"], "share": round(taken, 2)})
        left -= taken
    if left > 0.005:
        shares.append({"version": None, "percent": None, "share": round(left, 2)})
    return shares


def _hours(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= _MAX_HOURS:
        raise BadJSON(f"?hours= must be a whole number of hours from 1 to {_MAX_HOURS}, not {text[:20]!r}")
    return int(text)


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


_NO_STORE = {"Cache-Control": "no-store"}
_AUTH_ERRORS = {
    "missing": (401, "the admin API needs `Authorization: Bearer TOKEN`, a token from `waystation admin token`"),
    "none": (401, "no admin token exists yet: make one with `waystation admin token --data DIR` on the server"),
    "wrong": (403, "this admin token is not valid (revoked, or never made): make one with `waystation admin token`"),
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)
