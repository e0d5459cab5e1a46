"""The ASGI app: the static site and Waystation's APIs, under one origin.

    uvicorn "waystation.server.app:create_app" --factory
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .bundles_api import bundle_routes
from .config import ServerConfig
from .events_api import event_routes
from .features_api import feature_routes
from .registry import Registry
from .static import ISOLATION_HEADERS, SiteFiles
from .sync import sync_routes

__all__ = ["create_app"]


class IsolationHeaders:
    """Adds COOP/COEP/CORP to every HTTP response, API answers and 404s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend((k.lower().encode(), v.encode()) for k, v in ISOLATION_HEADERS.items())
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(site: str | Path = "dist", data: str | Path = "data", config: ServerConfig | None = None) -> Starlette:
    """The app serving `site` (a built dist/) with all server state under `data`, within the limits of `config`."""
    site, data = Path(site), Path(data)
    config = config or ServerConfig.from_env()
    data.mkdir(parents=True, exist_ok=True)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "waystation": __version__})

    sync, sync_lifespan = sync_routes(data, config)
    routes = [
        Route("/api/health", health),
        *bundle_routes(Registry(data), site),
        *sync,
        *event_routes(data, config),
        *feature_routes(data),
        Mount("/", SiteFiles(directory=site, html=True, check_dir=True), name="site"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(IsolationHeaders)], lifespan=sync_lifespan)
    app.state.site = site
    app.state.data = data
    app.state.config = config
    return app
