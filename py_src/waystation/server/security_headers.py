"""The headers every HTTP response carries: cross-origin isolation and the browser's defences.

One middleware adds them to everything the app sends, static files, API answers, 404s, 413s
and the 500 of an unhandled error alike (`create_app` wraps the whole Starlette stack in it).

The Content-Security-Policy is what the app needs and no more, found by running the e2e tests
under it and watching the console for violations:
- scripts only from this origin, and `'wasm-unsafe-eval'` so Pyodide and onnxruntime-web may
  compile their WebAssembly (neither needs `'unsafe-eval'` or inline scripts);
- workers (the Pyodide module worker, ORT's thread workers, the module service worker) from
  this origin; connections (fetch, the sync WebSocket) to this origin only, and to the origin of
  `WAYSTATION_CHUNK_BASE_URL` when it is set: the service worker fetches chunks from there, and
  its own fetches obey the policy its script came with (docs/static-hosting.md);
- `data:` images for the page's empty favicon (`<link rel="icon" href="data:,">`);
- no plugins, no <base>, no framing (`frame-ancestors 'none'`, and X-Frame-Options for old browsers).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .static_export import chunk_base_url, chunk_origin

__all__ = ["CONTENT_SECURITY_POLICY", "ISOLATION_HEADERS", "SECURITY_HEADERS", "SecurityHeaders", "security_headers"]

# COOP + COEP make the page cross-origin isolated, which onnxruntime-web needs for WASM
# threads: SharedArrayBuffer exists only there, and without it onnxruntime-web silently runs
# single-threaded (see docs/architecture.md, facts about the environment).
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _policy(connect: str = "") -> str:
    return "; ".join([
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        f"connect-src 'self'{connect}",
        "img-src 'self' data:",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def security_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers for a server with these settings (the process's environment by default)."""
    base = chunk_base_url(environ)
    return {
        **ISOLATION_HEADERS,
        "Content-Security-Policy": _policy(f" {chunk_origin(base)}" if base else ""),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


# Without WAYSTATION_CHUNK_BASE_URL: everything same-origin.
CONTENT_SECURITY_POLICY = _policy()
SECURITY_HEADERS = security_headers({})


class SecurityHeaders:
    """Adds `security_headers()` to every HTTP response (a route's own value of one wins)."""

    def __init__(self, app: ASGIApp, environ: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.headers = security_headers(environ)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
