"""The sync API: accounts over HTTP, documents over WebSocket.

    POST /api/sync/register, login, renew, logout, logout-all, password    (account_routes)
    WS   /api/sync/ws/{USER}/{DOC}?token=TOKEN                     y-websocket protocol

A socket that may not sync is accepted and then closed, with a code that says why: 4401 no
or unknown token, 4403 a room of another user, 4400 a malformed room name, 4429 its user has
`sockets_per_user` open already. An open socket is closed with 4401 when its token is revoked
or expires (`sessions`). USER is compared case-insensitively; the room joined is spelled
with the name the account is stored under. Refusing the
handshake instead reaches y-websocket as an HTTP error it retries forever; a close code is
something its `connection-close` listener can act on. A client that
breaks the protocol is closed alone: 1009 for a message over the size limit, 1003 for one
that does not parse. Nobody else in its room notices, and the document stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from ..config import ServerConfig
from .account_routes import AccountRoutes
from .auth import Accounts, Session
from .client import BAD_REQUEST, FORBIDDEN, TOO_BIG, UNAUTHORIZED, UNSUPPORTED_DATA, Client
from .errors import ProtocolError
from .hashing import PasswordHasher
from .limits import LimitExceeded, Pace
from .protocol import encode_permission_denied
from .rooms import Room, Rooms
from .sessions import Sessions
from .throttle import LoginThrottle

if TYPE_CHECKING:
    from .fanout import Fanout

__all__ = ["ROOM_NAME", "SyncEndpoint"]

log = logging.getLogger(__name__)

ROOM_NAME = re.compile(r"(?P<user>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})/[A-Za-z0-9_.:-]{1,128}")
_CLOSE_GRACE_SECONDS = 5.0
TOO_MANY_SOCKETS = 4429
_CLOSE_REASONS = {UNAUTHORIZED: "unauthorized", FORBIDDEN: "forbidden", BAD_REQUEST: "bad room name",
                  TOO_MANY_SOCKETS: "too many sockets"}
_INTERNAL_ERROR = 1011
_BURST_SECONDS = 4.0  # seconds of bytes_per_second a user may send at once (a paste, a reconnect)


class SyncEndpoint:
    """The routes over one set of accounts and rooms."""

    def __init__(self, accounts: Accounts, rooms: Rooms, config: ServerConfig, *, fanout: Fanout | None = None) -> None:
        self.accounts, self.rooms, self.config = accounts, rooms, config
        self.fanout = fanout
        self.sessions = Sessions(sockets_per_user=config.sockets_per_user)
        self.hasher = PasswordHasher(workers=config.password_hash_workers, queue=config.password_hash_queue)
        throttle = LoginThrottle(per_minute=config.login_per_minute_per_address,
                                 free_failures=config.login_free_failures, max_delay=config.login_max_delay)
        self.account_routes = AccountRoutes(accounts, self.sessions, self.hasher, throttle)
        self._paces: weakref.WeakValueDictionary[str, Pace] = weakref.WeakValueDictionary()  # by user, while they have a socket

    def routes(self) -> list[BaseRoute]:
        return [*self.account_routes.routes(), WebSocketRoute("/api/sync/ws/{room:path}", self.socket)]

    def close(self) -> None:
        self.hasher.close()

    def pubsub_status(self) -> dict[str, Any] | None:
        """For /api/health: None when this instance runs alone (no pub/sub configured), else
        `{"url": "redis://host:port/0" (password hidden), "connected": bool}`; while not connected
        the rooms serve their local clients only and catch up from the store once it is back."""
        return None if self.fanout is None else self.fanout.status()

    async def socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        session = await self._session(websocket.query_params.get("token", ""))
        refusal, room_name = _refusal(session, websocket.path_params["room"])
        if refusal is None and session is not None:
            client = Client(websocket, session.user, outbox_bytes=self.config.outbox_bytes)
            if self.sessions.admit(session, client):
                try:
                    await self._join_and_serve(client, room_name)
                finally:
                    self.sessions.remove(client)
                return
            refusal = TOO_MANY_SOCKETS, f"{session.user} has {self.config.sockets_per_user} sync sockets open already"
        if refusal is not None:
            await _refuse(websocket, *refusal)

    async def _session(self, token: str) -> Session | None:
        """What `token` stands for; checked again if a revocation happened meanwhile (it may be this one)."""
        while token:
            generation = self.sessions.generation
            session = await run_in_threadpool(self.accounts.session_for, token)
            if generation == self.sessions.generation:
                return session
        return None

    async def _join_and_serve(self, client: Client, room_name: str) -> None:
        try:
            room = await self.rooms.join(room_name, client)
        except LimitExceeded as exc:  # a new document past the user's limit
            client.close(exc.code, exc.reason)
            await client.run_sender()  # sends the close frame
            return
        try:
            await self._serve(client, room)
        finally:
            self.rooms.leave(room, client)

    async def _serve(self, client: Client, room: Room) -> None:
        sender = asyncio.create_task(client.run_sender())
        receiver = asyncio.create_task(self._receive(client, room))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done() and client.close_code is not None:
                await asyncio.wait({sender}, timeout=_CLOSE_GRACE_SECONDS)  # let it send the close frame
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _receive(self, client: Client, room: Room) -> None:
        """Feed the room until the peer goes or breaks the protocol (then close it).

        Past its user's burst, a socket is read only as fast as the user's rate allows: the wait
        is here, between reads, so TCP backpressure slows the sender and nobody else notices."""
        config = self.config
        pace = self._pace_of(client.user)
        while client.open:
            message = await client.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                client.close(UNSUPPORTED_DATA, "binary messages only")  # y-websocket speaks binary only
            elif len(data) > config.max_message_bytes:
                client.close(TOO_BIG, "message too large")
            elif (pause := pace.take(self._deliver(client, room, data))) > 0:
                await asyncio.sleep(pause)

    def _pace_of(self, user: str) -> Pace:
        """The pace `user`'s sockets share; it lives as long as one of them holds it."""
        pace = self._paces.get(user)
        if pace is None:
            config = self.config
            burst = max(_BURST_SECONDS * config.bytes_per_second, 2 * config.max_message_bytes)
            pace = self._paces[user] = Pace(config.messages_per_second, config.bytes_per_second, burst)
        return pace

    def _deliver(self, client: Client, room: Room, data: bytes) -> int:
        """Hand `data` to the room; the bytes of work it cost (see `Room.receive`)."""
        try:
            return room.receive(client, data)
        except LimitExceeded as exc:
            log.info("sync: closing %s in %s: %s", client.user, room.name, exc)
            client.close(exc.code, exc.reason)
        except ProtocolError as exc:
            log.info("sync: closing %s in %s: %s", client.user, room.name, exc)
            client.close(UNSUPPORTED_DATA, "not the y-websocket protocol")
        except Exception:
            log.exception("sync: message from %s in %s failed", client.user, room.name)
            client.close(_INTERNAL_ERROR)
        return len(data)


def _refusal(session: Session | None, room_name: str) -> tuple[tuple[int, str] | None, str]:
    """Why this socket may not sync, or None; and its room, spelled with the stored user name."""
    if session is None:
        return (UNAUTHORIZED, "log in: ?token= is missing, unknown, revoked or expired"), room_name
    match = ROOM_NAME.fullmatch(room_name)
    if match is None:
        return (BAD_REQUEST, "room must be USER/DOC"), room_name
    if match["user"].casefold() != session.user.casefold():  # room names are ASCII: casefold is lower()
        return (FORBIDDEN, f"room {room_name!r} belongs to another user"), room_name
    return None, session.user + room_name[len(match["user"]):]


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.send_bytes(encode_permission_denied(reason))  # y-protocols' auth message
        await websocket.close(code, _CLOSE_REASONS[code])  # a close reason has at most 123 bytes
    except Exception:
        pass  # gone already
