"""One connected WebSocket client: its outbox and the task that drains it.

A room never awaits a client. `send` queues and returns at once, whatever state the socket
is in; the client's own sender task does the awaiting, so a peer that vanished mid-broadcast
fails only its own task. (pycrdt-websocket awaited sends inside the room's task group: one
`ClientDisconnected` there stopped every room of the server.)

The outbox is bounded by `outbox_bytes` (close 1013 past it; the client resyncs when it
reconnects). Awareness is coalesced: for a reader that falls behind, only the newest state of
each awareness client id waits in its outbox, sent as one message where the first was queued,
so presence chatter cannot fill it however fast it comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from starlette.websockets import WebSocket

from .protocol import AwarenessEntry, encode_awareness

__all__ = ["Client"]

log = logging.getLogger(__name__)

# Close codes (RFC 6455 section 7.4.1, 4000-4999 private; the limits' codes are in `limits`).
UNSUPPORTED_DATA = 1003
TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
UNAUTHORIZED = 4401
FORBIDDEN = 4403
BAD_REQUEST = 4400

_ENTRY_OVERHEAD = 24  # bytes an awareness entry costs besides its state, for the outbox's count


class Client:
    """A WebSocket seen from its room: `send` never blocks and never raises."""

    def __init__(self, websocket: WebSocket, user: str, *, outbox_bytes: int = 64 << 20) -> None:
        self.websocket = websocket
        self.user = user
        self.outbox_bytes = outbox_bytes
        self.close_code: int | None = None
        self.close_reason = ""
        self._outbox: deque[bytes | None] = deque()  # None: where the coalesced awareness goes
        self._presence: dict[int, AwarenessEntry] = {}  # awareness waiting to go, newest per client id
        self._queued = 0  # bytes in the outbox, awareness included
        self._wakeup = asyncio.Event()

    @property
    def open(self) -> bool:
        return self.close_code is None

    @property
    def queued(self) -> int:
        return self._queued

    def send(self, message: bytes) -> None:
        if self.close_code is None and self._fits(len(message)):
            self._outbox.append(message)
            self._queued += len(message)
            self._wakeup.set()

    def send_awareness(self, entries: list[AwarenessEntry]) -> None:
        """Queue awareness entries, replacing any of the same client ids still waiting."""
        if self.close_code is not None or not entries:
            return
        added = sum(_cost(entry) - _cost(self._presence.get(entry.client_id)) for entry in entries)
        if not self._fits(added):
            return
        if not self._presence:
            self._outbox.append(None)
        for entry in entries:
            self._presence[entry.client_id] = entry
        self._queued += added
        self._wakeup.set()

    def close(self, code: int, reason: str = "") -> None:
        """Drop what is queued and close the socket with `code` (from the sender task)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._outbox.clear()
            self._presence.clear()
            self._queued = 0
            self._wakeup.set()

    async def run_sender(self) -> None:
        """Drain the outbox until closed; returns when the socket is closed or broken."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._outbox and self.close_code is None:
                    await self.websocket.send_bytes(self._next())
                if self.close_code is not None:
                    await self.websocket.close(self.close_code, self.close_reason)
                    return
        except Exception as exc:  # the peer is gone: this client is over, nobody else is
            log.debug("sync: send to %s failed: %r", self.user, exc)
            self.close_code = self.close_code or 1006

    def _next(self) -> bytes:
        message = self._outbox.popleft()
        if message is not None:
            self._queued -= len(message)
            return message
        entries, self._presence = list(self._presence.values()), {}
        self._queued -= sum(map(_cost, entries))
        return encode_awareness(entries)

    def _fits(self, size: int) -> bool:
        if self._queued and self._queued + size > self.outbox_bytes:
            # A reader this slow would hold the server's memory hostage; it resyncs on reconnect.
            self.close(TRY_AGAIN_LATER, "outbox full: reading too slowly")
            return False
        return True


def _cost(entry: AwarenessEntry | None) -> int:
    return 0 if entry is None else len(entry.state) + _ENTRY_OVERHEAD

