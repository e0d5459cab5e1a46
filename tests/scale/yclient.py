"""A y-websocket client in Python that outlives its connections, as the JS provider does: its
pycrdt document stays, and each new connection re-syncs it (the server's step 1 is answered with
everything the server lacks, so an edit a dead instance never stored reaches the next one).

It keeps track of what the server has acknowledged, in the sense of docs/server.md ("What an
acknowledgement promises"): the edits made before a sync step 1 whose step 2 answer came back
on the same connection.

    replica = Replica()
    await replica.connect(lb.url, "ada/notes", token)
    replica.append(1); await replica.acknowledge()     # 1 is now in replica.acknowledged
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import websockets
from pycrdt import (
    Array,
    Awareness,
    Doc,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

__all__ = ["Replica", "until"]


async def until(condition: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Replica:
    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.items: Array[Any] = self.doc.get("items", type=Array)
        self.made: list[Any] = []  # every value this replica appended, in order
        self.acknowledged: set[Any] = set()
        self.received: list[bytes] = []  # every message of every connection
        self.close_codes: list[int | None] = []
        self.ws: websockets.ClientConnection | None = None
        self._covered: list[list[Any]] = []  # per step 1 sent on this connection: what it covers
        self._answered = 0
        self._reader: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.ws is not None and self._reader is not None and not self._reader.done()

    @property
    def local_port(self) -> int:
        assert self.ws is not None
        return int(self.ws.local_address[1])

    async def connect(self, base_url: str, room: str, token: str) -> None:
        """Open a connection to `base_url` (http://host:port) and start syncing over it."""
        url = base_url.replace("http://", "ws://", 1) + f"/api/sync/ws/{room}?token={token}"
        self.ws = await websockets.connect(url, max_size=None, open_timeout=10)
        self._covered, self._answered = [], 0
        self._reader = asyncio.create_task(self._read(self.ws))
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.send_step1()

    async def reconnect(self, base_url: str, room: str, token: str, timeout: float = 30) -> None:
        """Connect again, retrying as y-websocket does while the address answers nothing."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self.connect(base_url, room, token)
                await self.synced()
                return
            except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, AssertionError):
                assert asyncio.get_running_loop().time() < deadline, "could not reconnect"
                await asyncio.sleep(0.1)

    async def send_step1(self) -> None:
        assert self.ws is not None
        self._covered.append(list(self.made))
        await self.ws.send(create_sync_message(self.doc))

    async def _read(self, ws: websockets.ClientConnection) -> None:
        try:
            async for message in ws:
                assert isinstance(message, bytes)
                self.received.append(message)
                if message[0] == 0:
                    reply = handle_sync_message(message[1:], self.doc)
                    if reply is not None:
                        await ws.send(reply)
                    elif message[1] == 1:  # a step 2: it answers our oldest unanswered step 1
                        if self._answered < len(self._covered):
                            self.acknowledged.update(self._covered[self._answered])
                        self._answered += 1
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_codes.append(ws.close_code)

    def append(self, value: Any) -> bytes:
        """Append `value` locally; the update to send."""
        state = self.doc.get_state()
        self.items.append(value)
        self.made.append(value)
        return create_update_message(self.doc.get_update(state))

    async def edit(self, value: Any) -> None:
        """Append `value` and send it (raises ConnectionClosed when the connection is gone)."""
        message = self.append(value)
        assert self.ws is not None
        await self.ws.send(message)

    async def acknowledge(self, timeout: float = 20) -> bool:
        """Ask the server to acknowledge everything made so far; whether it did before the connection ended."""
        try:
            await self.send_step1()
        except websockets.ConnectionClosed:
            return False
        wanted = len(self._covered)
        await until(lambda: self._answered >= wanted or not self.open, timeout, "an acknowledgement")
        return self._answered >= wanted

    async def synced(self, timeout: float = 20) -> None:
        assert await self.acknowledge(timeout), "the connection closed before syncing"

    async def send_awareness(self, state: dict[str, Any]) -> bytes:
        awareness = Awareness(self.doc)
        awareness.set_local_state(state)
        message = create_awareness_message(awareness.encode_awareness_update([awareness.client_id]))
        assert self.ws is not None
        await self.ws.send(message)
        return message

    def values(self) -> list[Any]:
        return list(self.items)

    async def closed(self, timeout: float = 30) -> int | None:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_codes[-1]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
