"""One connected WebSocket client: its outbox and the task that drains it.

A room never awaits a client. `send` queues and returns at once, whatever state the socket
is in; the client's own sender task does the awaiting, so a peer that vanished mid-broadcast
fails only its own task. (pycrdt-websocket awaited sends inside the room's task group: one
`ClientDisconnected` there stopped every room of the server; shared/DESIGN.md.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from starlette.websockets import WebSocket

__all__ = ["Client"]

log = logging.getLogger(__name__)

# Close codes (RFC 6455 section 7.4.1, 4000-4999 private).
UNSUPPORTED_DATA = 1003
TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
UNAUTHORIZED = 4401
FORBIDDEN = 4403
BAD_REQUEST = 4400


class Client:
    """A WebSocket seen from its room: `send` never blocks and never raises."""

    def __init__(self, websocket: WebSocket, user: str, *, outbox_bytes: int = 64 << 20) -> None:
        self.websocket = websocket
        self.user = user
        self.outbox_bytes = outbox_bytes
        self.close_code: int | None = None
        self._outbox: deque[bytes] = deque()
        self._queued = 0  # bytes in the outbox
        self._wakeup = asyncio.Event()

    @property
    def open(self) -> bool:
        return self.close_code is None

    def send(self, message: bytes) -> None:
        if self.close_code is not None:
            return
        if self._outbox and self._queued + len(message) > self.outbox_bytes:
            # A reader this slow would hold the server's memory hostage; it resyncs on reconnect.
            self.close(TRY_AGAIN_LATER)
            return
        self._outbox.append(message)
        self._queued += len(message)
        self._wakeup.set()

    def close(self, code: int) -> None:
        """Drop what is queued and close the socket with `code` (from the sender task)."""
        if self.close_code is None:
            self.close_code = code
            self._outbox.clear()
            self._queued = 0
            self._wakeup.set()

    async def run_sender(self) -> None:
        """Drain the outbox until closed; returns when the socket is closed or broken."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._outbox and self.close_code is None:
                    message = self._outbox.popleft()
                    self._queued -= len(message)
                    await self.websocket.send_bytes(message)
                if self.close_code is not None:
                    await self.websocket.close(self.close_code)
                    return
        except Exception as exc:  # the peer is gone: this client is over, nobody else is
            log.debug("sync: send to %s failed: %r", self.user, exc)
            self.close_code = self.close_code or 1006
