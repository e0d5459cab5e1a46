"""The limits of each TCP connection, enforced in uvicorn before any route runs.

uvicorn (0.54, h11) keeps a connection as long as its peer wants: one that sends nothing, or
trickles its headers a byte at a time, holds a file descriptor for ever, and enough of them
exhaust the process's descriptors (asyncio then logs a traceback per failed accept). Its
`limit_concurrency` answers 503 but still reads and holds every socket. `GuardedH11Protocol`
adds what is missing:

- a connection cap: past `max_connections` a new connection is aborted at once, unread and
  without a log line, so the descriptor is free again within the same loop turn;
- a header timeout: a request head (line and headers) must be complete `header_timeout`
  seconds after the connection opens, or after the first byte of a keep-alive request;
- a body timeout: a request body must be complete `body_timeout` seconds after its head.

uvicorn's own settings cover the rest: `timeout_keep_alive` (our `idle_timeout`), the
WebSocket ping interval and timeout (our `ws_ping_seconds`), the largest WebSocket message
(`max_message_bytes`) and how many unread ones a socket may queue.

Shutdown, behind a load balancer: on SIGTERM the instance first drains for `drain_seconds`
(the app's `Drain`, `app.state.drain`, is set, so `/api/health/ready` answers 503 and the
balancer stops choosing it, while everything still in flight is served), then uvicorn shuts
down as usual: it stops accepting, closes every WebSocket with 1012 (service restart: clients
reconnect, through the balancer, to another instance), waits for requests in flight, and runs
the lifespan's shutdown, which writes every buffered sync update. A second SIGTERM, or SIGINT
(Ctrl+C), skips what is left of the wait.

    serve(app, "127.0.0.1", 8000, ServerConfig.from_env())
"""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from .config import ServerConfig

__all__ = [
    "DrainingServer", "GuardedH11Protocol", "connection_cap", "guarded_protocol", "listen_backlog", "raise_open_files_limit",
    "serve", "uvicorn_config",
]

# Descriptors kept back from connections: SQLite, chunk and site files, thread pools, logs.
_RESERVED_FILES = 64
_WS_QUEUE = 4  # unread WebSocket messages a socket may have before its reading stops


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap, a header timeout and a body timeout.

    uvicorn makes one per accepted connection; `guarded_protocol(config, cap)` makes the subclass
    that carries the limits.
    """

    limits: ClassVar[ServerConfig] = ServerConfig()
    max_connections: ClassVar[int] = ServerConfig.max_connections

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting: str | None = None  # "head" or "body": what the deadline is for
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            # Refused before reading a byte: abort() frees the descriptor now, and the peer gets
            # nothing to wait on. Not logged: a flood would fill the log instead.
            self._refused = True
            self.transport = transport
            transport.abort()
            return
        super().connection_made(transport)
        self._arm("head", self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting is None and self.conn.their_state is h11.IDLE:
            self._arm("head", self.limits.header_timeout)  # the first bytes of a keep-alive request
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the WebSocket protocol takes over; its pings watch the peer from now on
        super().handle_websocket_upgrade(event)

    def _follow_request(self) -> None:
        """Move the deadline on as the request advances: head complete, then body complete."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._awaiting != "body":
                self._arm("body", self.limits.body_timeout)
        elif state is not h11.IDLE or self._awaiting == "body":
            # The request is all in (or the body ended and the next request has not begun:
            # uvicorn's keep-alive timeout watches that idle time).
            self._disarm()

    def _arm(self, awaiting: str, seconds: float) -> None:
        self._disarm()
        self._awaiting = awaiting
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._awaiting = None

    def _expire(self) -> None:
        # Too slow: the peer is gone or stalling on purpose. abort(), not close(): close would
        # wait for a peer that does not read. A route waiting on the body gets http.disconnect.
        self._deadline = self._awaiting = None
        if not self.transport.is_closing():
            self.transport.abort()


def guarded_protocol(config: ServerConfig, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, carrying `config`'s limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"limits": config, "max_connections": max_connections})


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # not allowed here: keep the soft limit and fit the connection cap under it
    return soft


def listen_backlog(open_files: int) -> int:
    """The listen backlog, which asyncio also uses as the most connections it accepts in one go."""
    return max(16, min(511, open_files // 32))


def connection_cap(config: ServerConfig, open_files: int) -> int:
    """`config.max_connections`, lowered if need be so connections can never exhaust `open_files`.

    asyncio accepts up to a backlog of connections at once and builds their protocols a few loop
    turns later, so up to about four backlogs of sockets are open before the cap can refuse
    them. Each connection may hold a second descriptor (a file being sent), hence half the rest.
    """
    return max(1, min(config.max_connections, (open_files - _RESERVED_FILES - 4 * listen_backlog(open_files)) // 2))


def uvicorn_config(app: Any, host: str, port: int, config: ServerConfig, open_files: int) -> uvicorn.Config:
    """uvicorn's settings for `app` within `config`'s limits and the process's `open_files`."""
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", backlog=listen_backlog(open_files),
        http=guarded_protocol(config, connection_cap(config, open_files)),
        timeout_keep_alive=config.idle_timeout,  # type: ignore[arg-type]  # a float works: call_later
        ws_ping_interval=config.ws_ping_seconds, ws_ping_timeout=config.ws_ping_seconds,
        # The WebSocket layer refuses an oversized message (1009) before buffering it, and holds
        # few unread messages of a socket whose reading the sync server paces: past them it stops
        # reading the socket, and TCP slows its sender.
        ws_max_size=config.max_message_bytes, ws_max_queue=_WS_QUEUE,
        # No permessage-deflate: it compresses on the event loop, and one 15 MB document sent to
        # a joining client stalled every other socket 1.4 s (30 MB: 2.4 s).
        ws_per_message_deflate=False,
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM drains for `drain_seconds` before its usual shutdown.

    `drain` is called once the wait starts (it sets what `/api/health/ready` reports). The wait
    is checked on uvicorn's own tick (every 0.1 s), so nothing runs in the signal handler but
    the recording of the time.
    """

    def __init__(self, config: uvicorn.Config, drain: Callable[[], None] | None, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain, self.drain_seconds = drain, drain_seconds
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain_seconds <= 0 or self.drain_deadline is not None or self.should_exit:
            if self.drain is not None:
                self.drain()  # a shutdown without the wait still stops /ready answering 200
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)  # uvicorn raises it again once shut down, as it does for its own
        if self.drain is not None:
            self.drain()
        self.drain_deadline = time.monotonic() + self.drain_seconds

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(app: Any, host: str, port: int, config: ServerConfig, say: Callable[[str], None] = print,
          drain: Callable[[], None] | None = None) -> None:
    """Run `app` on host:port until interrupted, within `config`'s connection limits.

    `drain` (default: `app.state.drain.start`, if the app has one) is called on SIGTERM, then
    the server keeps serving `config.drain_seconds` before shutting down.
    """
    open_files = raise_open_files_limit()
    cap = connection_cap(config, open_files)
    if cap < config.max_connections:
        say(f"max_connections lowered from {config.max_connections} to {cap}: only {open_files} open files allowed")
    if drain is None:
        found = getattr(getattr(app, "state", None), "drain", None)
        drain = getattr(found, "start", None)
    DrainingServer(uvicorn_config(app, host, port, config, open_files), drain, config.drain_seconds).run()
