"""CRDT state sync: a y-websocket server over pycrdt, persisted to SQLite.

Clients (Yjs + y-websocket in the page, pycrdt on CPython) log in for a token, then open
`/api/sync/ws/USER/DOC?token=...`; each user reaches only their own documents. Documents
live in `data/sync.sqlite3`, committed in groups before anything reveals them, and compacted (see `store`).

    routes, lifespan = sync_routes(Path("data"))
    app = Starlette(routes=[*routes, ...], lifespan=lifespan)

Why not pycrdt-websocket: its `WebsocketServer`/`YRoom` await client sends inside the
room's task group, so one client vanishing mid-broadcast stops every room; a second client
of a new room can wait forever on the room's start lock; rooms never load from a store; and
its per-update writes are cancelled or lost on close and SIGTERM (measured: docs/architecture.md).
Fixing that means overriding most of `YRoom` and `WebsocketServer`. The protocol itself is
small: this package keeps pycrdt (`Doc`, `merge_updates`, its message helpers) and owns the
rest in a few hundred lines: a never-blocking outbox per client (`client`), rooms whose
message handling never awaits (`rooms`), and a group-commit store (`store`).

Several instances (`waystation serve` behind a load balancer, on one shared store) keep each
room's copies together through Redis pub/sub when given `pubsub="redis://..."` (else
`$WAYSTATION_PUBSUB`): see `fanout`. Without it nothing of Redis is imported.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from ..config import ServerConfig
from ..storage import Storage
from .auth import Accounts
from .endpoint import SyncEndpoint
from .errors import AccountError, ProtocolError
from .rooms import Room, Rooms
from .store import UpdateStore

__all__ = [
    "AccountError",
    "Accounts",
    "ProtocolError",
    "Room",
    "Rooms",
    "SyncEndpoint",
    "UpdateStore",
    "sync_endpoint",
    "sync_routes",
]

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def sync_routes(data: str | Path | Storage, config: ServerConfig | None = None) -> tuple[list[BaseRoute], Lifespan]:
    """The sync routes over `data/sync.sqlite3`, and the lifespan that opens and flushes the store.

    The lifespan must run (Starlette's `lifespan=`): on shutdown, SIGTERM included, it writes
    every buffered update before the process exits.
    """
    endpoint, lifespan = sync_endpoint(data, config)
    return endpoint.routes(), lifespan


def sync_endpoint(data: str | Path | Storage, config: ServerConfig | None = None,
                  pubsub: str | None = None) -> tuple[SyncEndpoint, Lifespan]:
    """`sync_routes`, with the endpoint itself: its accounts and rooms serve other APIs too (run_api).

    `pubsub` (a `redis://` URL; else `$WAYSTATION_PUBSUB`; else none): the Redis through which
    this instance's rooms meet their copies on other instances sharing the store."""
    config = config or ServerConfig.from_env()
    store = UpdateStore(data, compact_after=config.compact_after, durable_sync=bool(config.fsync_commits))
    rooms = Rooms(store, config)
    pubsub = pubsub or os.environ.get("WAYSTATION_PUBSUB") or None
    fanout = None
    if pubsub:
        from .fanout import Fanout  # imports redis: only when asked for

        fanout = Fanout(pubsub, rooms)
        rooms.relay = fanout
    endpoint = SyncEndpoint(Accounts(data, token_hours=config.token_hours), rooms, config, fanout=fanout)
    if fanout is not None:  # a logout here closes the token's sockets on every instance
        endpoint.sessions.relay = fanout.publish_sessions
        fanout.on_sessions = endpoint.sessions.apply_relayed

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await store.open()
        if fanout is not None:
            fanout.start()
        try:
            yield
        finally:
            endpoint.close()
            try:
                if fanout is not None:
                    await store.flush()  # its commits publish: before the fanout closes
                    await fanout.close()
            finally:
                await store.close()

    return endpoint, lifespan
