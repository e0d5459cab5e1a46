"""A limit on the size of request bodies, enforced before a route holds more than it.

A body announced too large (Content-Length) is refused with 413 before the route runs and
before a byte of it is read; a streamed (chunked) body is refused as soon as it passes the
limit, so a route never buffers more than the limit plus one read. The rest of a refused
body is drained and dropped by the server, bounded by its body timeout.

Routes that take larger bodies get a limit of their own from a table of path prefixes:

    BodyLimit(app, max_bytes=64 << 10, routes={"/api/bundles/upload": 512 << 20})

Starlette's own RequestBodyLimitMiddleware was the first choice, but it answers in plain text
and overrides any JSON refusal a route or handler makes; our refusals are JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import env_name

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """Raised to the route reading a body past its limit (the 413 has already gone out)."""


class BodyLimit:
    """ASGI middleware: 413 `{"error": ...}` for a request body over `max_bytes` (or its route's limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int, routes: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Longest prefix first, so "/api/a/b" wins over "/api/a".
        self.routes = sorted((routes or {}).items(), key=lambda item: -len(item[0]))

    def limit(self, path: str) -> int:
        """The body limit of requests to `path`."""
        return next((limit for prefix, limit in self.routes if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _refuse(send, limit)
            return
        await _LimitedRequest(limit, receive, send).run(self.app, scope)


class _LimitedRequest:
    """One request's receive and send, counting the body as it comes."""

    def __init__(self, limit: int, receive: Receive, send: Send) -> None:
        self.limit, self._receive, self._send = limit, receive, send
        self.received = 0
        self.response_started = self.refused = False

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except BodyTooLarge:
            if not self.refused:  # the route had started its answer: nothing more to say
                raise

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                if not self.response_started:
                    # Answered here, not by the route: a route catching the exception cannot
                    # turn the refusal into anything else.
                    self.refused = True
                    await _refuse(self._send, self.limit)
                raise BodyTooLarge(f"the request body passed {self.limit} bytes")
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


async def _refuse(send: Send, limit: int) -> None:
    error = f"the request body is larger than {limit} bytes (the limit of this route; {env_name('max_body_bytes')})"
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]})
    await send({"type": "http.response.body", "body": body})
