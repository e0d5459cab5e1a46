"""The ASGI app: the static site and Waystation's APIs, under one origin.

    uvicorn "waystation.server.app:create_app" --factory
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp

from .admin_api import admin_routes
from .body_limit import BodyLimit
from .bundles_api import bundle_routes
from .config import ServerConfig
from .events_api import event_routes
from .features_api import feature_routes
from .health import Drain, health_routes
from .registry import Registry
from .run_api import RunService, run_routes
from .security_headers import SecurityHeaders
from .static import SiteFiles
from .storage import Storage, Unavailable
from .sync import sync_endpoint
from .telemetry_api import telemetry_routes

__all__ = ["create_app"]


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A store could not reach PostgreSQL: the request is refused whole, nothing half-written
    (each write is one transaction), and the client may retry once the database is back."""
    return JSONResponse({"error": "database-unavailable", "detail": str(exc)}, status_code=503,
                        headers={"Retry-After": "5"})


class _App(Starlette):
    """Starlette with the security headers outside everything, its 500 answers included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(site: str | Path = "dist", data: str | Path | Storage = "data", config: ServerConfig | None = None,
               *, pubsub: str | None = None) -> Starlette:
    """The app serving `site` (a built dist/) with the server's state in `data` (a folder of SQLite
    files, or a Storage: on PostgreSQL the folder keeps only this instance's caches), within the
    limits of `config`; with `pubsub` (a redis:// URL, else $WAYSTATION_PUBSUB) its sync rooms
    are shared with the other instances.

    Request bodies are limited to `config.max_body_bytes` (413 past it); a route that takes more
    gets its own limit in BodyLimit's `routes` table.
    """
    site, storage = Path(site), Storage.at(data)
    config = config or ServerConfig.from_env()
    storage.data.mkdir(parents=True, exist_ok=True)
    data = storage  # every store below opens its database here

    sync, sync_lifespan = sync_endpoint(data, config, pubsub)
    registry = Registry(data)
    runs = RunService(registry, sync.accounts, sync.rooms, config)
    drain = Drain()
    routes = [
        *health_routes(ping=registry.db.ping, engine=storage.engine, drain=drain, pubsub_status=sync.pubsub_status),
        *bundle_routes(registry, site),
        *sync.routes(),
        *run_routes(runs),
        *event_routes(data, config),
        *feature_routes(data),
        *telemetry_routes(data, config, registry),
        *admin_routes(registry, data, site),
        Mount("/", SiteFiles(directory=site, html=True, check_dir=True), name="site"),
    ]
    app = _App(routes=routes, lifespan=sync_lifespan, exception_handlers={Unavailable: _database_unavailable},
               middleware=[Middleware(BodyLimit, max_bytes=config.max_body_bytes,
                                      routes={"/api/run/": config.run_body_bytes,
                                              "/api/telemetry": config.telemetry_report_bytes,
                                              "/api/logs": config.log_upload_bytes})])
    app.state.site = site
    app.state.data = storage.data
    app.state.storage = storage
    app.state.drain = drain
    app.state.config = config
    return app
