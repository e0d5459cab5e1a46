"""The sync API: accounts over HTTP, documents over WebSocket.

    POST /api/sync/register   {"user": NAME, "password": PW}  ->  201 {"user", "token"}
    POST /api/sync/login      {"user": NAME, "password": PW}  ->  200 {"user", "token"}
    WS   /api/sync/ws/{USER}/{DOC}?token=TOKEN                     y-websocket protocol

A socket that may not sync is accepted and then closed, with a code that says why: 4401 no
or unknown token, 4403 a room of another user, 4400 a malformed room name. Refusing the
handshake instead reaches y-websocket as an HTTP error it retries forever; a close code is
something its `connection-close` listener can act on (shared/DESIGN.md). A client that
breaks the protocol is closed alone: 1009 for a message over the size limit, 1003 for one
that does not parse. Nobody else in its room notices, and the document stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from json import JSONDecodeError

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from .auth import Accounts
from .client import BAD_REQUEST, FORBIDDEN, TOO_BIG, UNAUTHORIZED, UNSUPPORTED_DATA, Client
from ..config import ServerConfig
from .errors import AccountError, ProtocolError
from .protocol import encode_permission_denied
from .rooms import Room, Rooms

__all__ = ["ROOM_NAME", "SyncEndpoint"]

log = logging.getLogger(__name__)

ROOM_NAME = re.compile(r"(?P<user>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})/[A-Za-z0-9_.:-]{1,128}")
_CLOSE_GRACE_SECONDS = 5.0
_CLOSE_REASONS = {UNAUTHORIZED: "unauthorized", FORBIDDEN: "forbidden", BAD_REQUEST: "bad room name"}
_INTERNAL_ERROR = 1011


class SyncEndpoint:
    """The routes over one set of accounts and rooms."""

    def __init__(self, accounts: Accounts, rooms: Rooms, config: ServerConfig) -> None:
        self.accounts, self.rooms, self.config = accounts, rooms, config

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/sync/register", self.register, methods=["POST"]),
            Route("/api/sync/login", self.login, methods=["POST"]),
            WebSocketRoute("/api/sync/ws/{room:path}", self.socket),
        ]

    async def register(self, request: Request) -> JSONResponse:
        return await self._issue_token(request, self.accounts.register, status=201)

    async def login(self, request: Request) -> JSONResponse:
        return await self._issue_token(request, self.accounts.login, status=200)

    async def _issue_token(self, request: Request, issue: Callable[[str, str], str], *, status: int) -> JSONResponse:
        try:
            body = await request.json()
            user, password = body["user"], body["password"]
            if not isinstance(user, str) or not isinstance(password, str):
                raise TypeError
        except (JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            return JSONResponse({"error": 'send JSON {"user": NAME, "password": PASSWORD}'}, status_code=400)
        try:
            token = await run_in_threadpool(issue, user, password)
        except AccountError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"user": user, "token": token}, status_code=status)

    async def socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        room_name = websocket.path_params["room"]
        token = websocket.query_params.get("token", "")
        user = await run_in_threadpool(self.accounts.user_for, token) if token else None
        refusal = _refusal(user, room_name)
        if refusal is not None:
            code, reason = refusal
            await _refuse(websocket, code, reason)
            return
        assert user is not None
        client = Client(websocket, user, outbox_bytes=self.config.outbox_bytes)
        room = await self.rooms.join(room_name, client)
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
        """Feed the room until the peer goes or breaks the protocol (then close it)."""
        while client.open:
            message = await client.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                client.close(UNSUPPORTED_DATA)  # y-websocket speaks binary only
            elif len(data) > self.config.max_message_bytes:
                client.close(TOO_BIG)
            else:
                self._deliver(client, room, data)

    def _deliver(self, client: Client, room: Room, data: bytes) -> None:
        try:
            room.receive(client, data)
        except ProtocolError as exc:
            log.info("sync: closing %s in %s: %s", client.user, room.name, exc)
            client.close(UNSUPPORTED_DATA)
        except Exception:
            log.exception("sync: message from %s in %s failed", client.user, room.name)
            client.close(_INTERNAL_ERROR)


def _refusal(user: str | None, room_name: str) -> tuple[int, str] | None:
    if user is None:
        return UNAUTHORIZED, "log in: ?token= is missing, unknown or expired"
    match = ROOM_NAME.fullmatch(room_name)
    if match is None:
        return BAD_REQUEST, "room must be USER/DOC"
    if match["user"] != user:
        return FORBIDDEN, f"room {room_name!r} belongs to another user"
    return None


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.send_bytes(encode_permission_denied(reason))  # y-protocols' auth message
        await websocket.close(code, _CLOSE_REASONS[code])  # a close reason has at most 123 bytes
    except Exception:
        pass  # gone already
