"""Rooms across instances: Redis pub/sub between the copies of one room that several
`waystation serve` processes hold.

Each room an instance holds is subscribed to `waystation:sync:DB:ROOM` (DB: the URL's database
number). What a room reveals to its own clients (an update, once its batch is durable; awareness
at once) is published there, tagged with this instance's id so that it ignores its own, and the
other instances' copies apply it and pass it to their clients. Updates are never stored twice: the instance that took one
stored it before publishing it, and the others read it, like everything else, from the shared store.

Pub/sub is fire-and-forget, so nothing here is trusted to arrive. The store is the truth, and a
room catches up from it (`Rooms.resync`) whenever a message may have been missed:
- each time its subscription is confirmed (the first one, and after every reconnect): what was
  committed before it is in the store, what comes after it comes on the channel;
- when a remote update arrives whose predecessors this copy lacks;
- when another instance says so (a RESYNC message): an instance whose publishes may have been
  lost (Redis down, its outbox over the bound) sends one per such room once it is connected again;
- when another instance goes silent: each instance says it is alive on the control channel every
  `_PING_SECONDS`, and one not heard for `_SILENCE_SECONDS` may have died (SIGKILL, a crash, its
  machine) between committing an update and publishing it, so every room held reloads once.

Nothing awaits Redis on a room's behalf: `publish` queues and returns (a task sends the queue,
pipelined), `subscribe` waits at most `_CONFIRM_SECONDS` for the confirmation and then lets the
room load anyway (it catches up when the confirmation comes). A Redis outage is logged once,
local rooms go on serving their clients, and the connection is retried with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .._urls import redacted
from .rooms import Relayed

__all__ = ["Fanout", "Listener"]

log = logging.getLogger(__name__)

PREFIX = "waystation:sync:"  # then the URL's database number: channels are server-wide in Redis
_CONTROL = "\x00control"  # after the prefix; always subscribed: its confirmation says the connection is up
_ID_BYTES = 16
_CONFIRM_SECONDS = 2.0  # a room loads after this even without its subscription confirmed
_OUTBOX_BYTES = 64 << 20  # queued for Redis; past it messages are dropped and their rooms resynced
_PIPELINE_MESSAGES = 256  # published per round trip at most
_BACKOFF_SECONDS = (0.1, 5.0)  # first and longest wait between reconnects
_CLOSE_SECONDS = 2.0  # how long shutdown waits for the outbox to drain
_PING_SECONDS = 5.0  # a quiet subscription is pinged this often
_SILENCE_SECONDS = 15.0  # with no answer for this long, the connection is dropped and made anew
_ALIVE = b"A"  # on the control channel, then the instance's id: "I am alive"
_BYE = b"B"  # ... "I am leaving, having published everything" (a graceful shutdown: no resync)
_SESSIONS = b"S"  # ..., then a token revoked or moved here, as JSON (sync.sessions), for the others' sockets
_KINDS = frozenset(Relayed)  # a message of another kind (a newer instance's) is ignored


class Listener(Protocol):
    """What the fanout tells the rooms (`Rooms` implements it)."""

    def remote(self, room: str, kind: Relayed, payload: bytes) -> None: ...

    def subscribed(self, room: str) -> None: ...


class Fanout:
    """One instance's Redis pub/sub: a connection subscribed to its rooms, another that publishes."""

    def __init__(self, url: str, listener: Listener) -> None:
        self.url = url
        self.listener = listener
        self.instance = os.urandom(_ID_BYTES)
        self.connected = False
        options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 10, "socket_keepalive": True}
        # The subscription's reconnects are ours (each must resync); a publish may be sent twice
        # (a pooled connection found dead after an outage): its receivers apply it twice, harmlessly.
        self._client = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        self._publisher = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        # Pub/sub ignores the database number; deployments sharing a Redis by database must not
        # hear each other's rooms.
        self.prefix = f"{PREFIX}{self._client.connection_pool.connection_kwargs.get('db', 0)}:"
        self._wanted: set[str] = set()  # rooms held: to be subscribed
        self._sent: set[str] = set()  # rooms whose SUBSCRIBE went out on the current connection
        self._confirms: dict[str, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_bytes = 0
        self._dropped: set[str] = set()  # rooms whose updates may not have reached the others
        self._wake_publisher = asyncio.Event()
        self._wake_subscriber = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failures = 0  # consecutive, for the backoff and to log an outage once
        self._peers: dict[bytes, float] = {}  # other instances heard on the control channel: when last
        self.on_sessions: Callable[[dict[str, Any]], None] | None = None  # another instance's revocation

    def status(self) -> dict[str, Any]:
        """For the health endpoint: where (password hidden), and whether the subscription is up."""
        return {"url": redacted(self.url), "connected": self.connected}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read(), name="sync-fanout-read"),
                       asyncio.create_task(self._publish_loop(), name="sync-fanout-publish"),
                       asyncio.create_task(self._reconcile(), name="sync-fanout-subscribe"),
                       asyncio.create_task(self._say_alive(), name="sync-fanout-alive")]

    async def close(self) -> None:
        """Send what is queued (for at most `_CLOSE_SECONDS`), then disconnect."""
        deadline = asyncio.get_running_loop().time() + _CLOSE_SECONDS
        while self._outbox and self.connected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self.connected and not self._outbox:
            with suppress(Exception):
                await asyncio.wait_for(self._publisher.publish(self.prefix + _CONTROL, _BYE + self.instance), 1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in (self._client, self._publisher):
            with suppress(Exception):
                await client.aclose()

    # --- for the rooms ---

    async def subscribe(self, room: str) -> None:
        """Subscribe to `room`'s channel; returns once Redis confirmed it, or after
        `_CONFIRM_SECONDS`, or at once when Redis is down (`Listener.subscribed` comes later)."""
        self._wanted.add(room)
        self._wake_subscriber.set()
        if not self.connected:
            return
        confirm = self._confirms.get(room)
        if confirm is None or confirm.done():
            confirm = self._confirms[room] = asyncio.get_running_loop().create_future()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(confirm), _CONFIRM_SECONDS)

    def unsubscribe(self, room: str) -> None:
        self._wanted.discard(room)
        self._confirms.pop(room, None)
        self._wake_subscriber.set()

    def publish_sessions(self, change: dict[str, Any]) -> None:
        """Tell the other instances of a token revoked or moved here. Lost while Redis is down:
        their sockets of it then close when the token expires, or at their next check."""
        if not self.connected:
            return
        message = _SESSIONS + self.instance + json.dumps(change, separators=(",", ":")).encode()
        self._outbox.append((self.prefix + _CONTROL, message))
        self._outbox_bytes += len(message)
        self._wake_publisher.set()

    def publish(self, room: str, kind: Relayed, payload: bytes) -> None:
        """Queue a message for the other instances' copies of `room`; never blocks."""
        if not self.connected or self._outbox_bytes + len(payload) > _OUTBOX_BYTES:
            if kind != Relayed.AWARENESS:  # awareness is renewed every 15 s by its clients
                self._dropped.add(room)
            return
        message = bytes([kind]) + self.instance + payload
        self._outbox.append((self.prefix + room, message))
        self._outbox_bytes += len(message)
        self._wake_publisher.set()

    # --- tasks ---

    async def _read(self) -> None:
        """Hold the subscribing connection; on any failure drop it, wait, and make a new one."""
        while True:
            pubsub = self._pubsub = self._client.pubsub()
            self._sent = set()
            try:
                await pubsub.subscribe(self.prefix + _CONTROL)
                loop = asyncio.get_running_loop()
                heard = pinged = loop.time()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    now = loop.time()
                    if message is not None:
                        heard = now
                        self._handle(message)
                    elif now - heard > _SILENCE_SECONDS:  # a server that hangs, or a partition: no error comes
                        raise TimeoutError(f"no answer for {_SILENCE_SECONDS:.0f} s")
                    elif now - heard > _PING_SECONDS and now - pinged > _PING_SECONDS:
                        await pubsub.ping()  # its answer comes as a message, read above
                        pinged = now
                    self._forget_silent_peers(now)
            except Exception as exc:  # Redis's errors, and any other: reconnect, never stop reading
                self._failed(exc)
            finally:
                self._pubsub = None
                self.connected = False
                with suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self._backoff())

    def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        room = channel.decode()[len(self.prefix):] if isinstance(channel, bytes) else ""
        if kind == "message" and room == _CONTROL:
            data = message["data"]
            if data[:1] == _ALIVE and data[1:] != self.instance:
                self._peers[data[1:]] = asyncio.get_running_loop().time()
            elif data[:1] == _BYE:
                self._peers.pop(data[1:], None)
            elif data[:1] == _SESSIONS and data[1:1 + _ID_BYTES] != self.instance and self.on_sessions is not None:
                on_sessions = self.on_sessions
                self._tell(lambda raw: on_sessions(json.loads(raw)), data[1 + _ID_BYTES:])
        elif kind == "message":
            data = message["data"]
            if len(data) > _ID_BYTES and data[1:1 + _ID_BYTES] != self.instance and data[0] in _KINDS:
                self._tell(self.listener.remote, room, Relayed(data[0]), data[1 + _ID_BYTES:])
        elif kind == "subscribe" and room == _CONTROL:
            self._connected()
        elif kind == "subscribe":
            if (confirm := self._confirms.get(room)) is not None and not confirm.done():
                confirm.set_result(None)
            if room in self._wanted:
                self._tell(self.listener.subscribed, room)

    def _tell(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # one room's trouble must not stop every room's messages
            log.exception("sync fanout: handling a message of %s failed", args[0])

    def _connected(self) -> None:
        if self._failures:
            log.warning("sync fanout: connected to %s again; resyncing %d rooms", redacted(self.url), len(self._wanted))
        self._failures = 0
        self._peers.clear()  # heard again from now on: a silence while we were away says nothing
        self.connected = True
        self._wake_subscriber.set()  # every room held: subscribe, and each resyncs when confirmed
        self._ask_resyncs()  # the others may have missed what this instance took meanwhile

    async def _reconcile(self) -> None:
        """Bring the connection's subscriptions to the rooms held, one command at a time (a
        SUBSCRIBE and an UNSUBSCRIBE of one room never overtake each other)."""
        while True:
            await self._wake_subscriber.wait()
            self._wake_subscriber.clear()
            pubsub = self._pubsub
            if pubsub is None or not self.connected:
                continue
            sent = self._sent
            add, remove = sorted(self._wanted - sent), sorted(sent - self._wanted)
            try:
                if add:
                    sent.update(add)
                    await pubsub.subscribe(*(self.prefix + room for room in add))
                if remove:
                    sent.difference_update(remove)
                    await pubsub.unsubscribe(*(self.prefix + room for room in remove))
            except Exception as exc:
                self._failed(exc)  # the reader sees it too, and reconnects

    async def _publish_loop(self) -> None:
        while True:
            await self._wake_publisher.wait()
            self._wake_publisher.clear()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), _PIPELINE_MESSAGES))]
                self._outbox_bytes -= sum(len(message) for _, message in batch)
                try:
                    async with self._publisher.pipeline(transaction=False) as pipe:
                        for channel, message in batch:
                            pipe.publish(channel, message)
                        await pipe.execute()
                except Exception as exc:
                    # Maybe delivered, maybe not: the others reload these rooms once we are back.
                    self._dropped.update(channel[len(self.prefix):] for channel, message in batch
                                         if message[0] != Relayed.AWARENESS)
                    self._failed(exc)
                    await asyncio.sleep(self._backoff())
                if self._dropped and self.connected:
                    self._ask_resyncs()

    async def _say_alive(self) -> None:
        while True:
            if self.connected:
                with suppress(Exception):  # a failure shows on the subscription too
                    await self._publisher.publish(self.prefix + _CONTROL, _ALIVE + self.instance)
            await asyncio.sleep(_PING_SECONDS)

    def _forget_silent_peers(self, now: float) -> None:
        """An instance not heard for `_SILENCE_SECONDS` may have died with an update committed and
        not yet published: every room held reloads from the store once."""
        silent = [peer for peer, heard in self._peers.items() if now - heard > _SILENCE_SECONDS]
        if not silent:
            return
        for peer in silent:
            del self._peers[peer]
        log.warning("sync fanout: %d instance(s) went silent; resyncing %d rooms", len(silent), len(self._wanted))
        for room in sorted(self._wanted):
            self._tell(self.listener.subscribed, room)

    def _ask_resyncs(self) -> None:
        """Tell the other instances to reload the rooms whose updates they may have missed."""
        dropped, self._dropped = self._dropped & self._wanted, set()
        for room in dropped:
            self.publish(room, Relayed.RESYNC, b"")

    def _failed(self, exc: BaseException) -> None:
        if self._failures == 0:
            log.warning("sync fanout: Redis at %s failed (%s: %s); rooms keep serving their own clients, "
                        "and resync from the store once it is back", redacted(self.url), type(exc).__name__, exc)
        self._failures += 1

    def _backoff(self) -> float:
        first, longest = _BACKOFF_SECONDS
        return float(min(longest, first * 2 ** min(self._failures, 16)))
