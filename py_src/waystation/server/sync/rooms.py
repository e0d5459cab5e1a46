"""Rooms: one shared document each, loaded from the store when its first client comes and
dropped from memory when its last client leaves.

A room relays what its clients send: a sync step 1 is answered with the missing updates
(step 2), an update is applied to the room's document (or held until its predecessors come:
`document`), appended to the store and passed on to every other client, awareness is passed
on to everyone. Handling a message never awaits, so messages apply in the order they arrive.

The promise: nothing that reveals an update leaves the server before the store has committed
it. Its broadcast, and every sync step 2 answered after it came, wait in the room's queue of
reveals until the batch holding it is durable, then go out in the order they were made. So a
client that sees its edit acknowledged (a step 2 after it, or another client receiving it)
knows it is on disk, and each client gets everything in the order it happened: no step 2 that
omits an update sent to it before. Awareness and the handshake reveal no update: sent at once.

Limits, checked before the work is done (codes in `limits`): an update that would take the
document past `max_document_bytes` is refused (not applied, not stored; 4413); updates held
for missing predecessors are bounded (4412); an awareness state over `awareness_state_bytes`
closes its sender (1009); awareness ids are bounded per room and per connection (`awareness`).

A room's first load runs on a worker thread (applying a stored history is O(document), too
much for the event loop); concurrent first clients share that one load, and each joins the room
registered once it is done: no start lock to wait on forever (pycrdt-websocket's
`YRoom._start_lock`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from pycrdt import Doc

from ..config import ServerConfig
from .awareness import AwarenessStates
from .client import TOO_BIG, Client
from .document import Document
from .errors import ProtocolError
from .limits import DOCUMENT_TOO_LARGE, MISSING_PREDECESSORS, TOO_MANY_DOCUMENTS, LimitExceeded
from .protocol import (
    AwarenessMessage,
    QueryAwareness,
    SyncMessage,
    SyncStep,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
    parse,
)
from .store import UpdateStore

__all__ = ["Room", "Rooms"]

_EMPTY_UPDATE = b"\x00\x00"
_HELD_PER_MESSAGE = 4  # updates held for missing predecessors: at most this many max-size messages
TOO_LARGE = 4413
HELD_TOO_LONG = 4412


class Room:
    """One document and the clients editing it."""

    def __init__(self, name: str, store: UpdateStore, config: ServerConfig | None = None,
                 document: Document | None = None) -> None:
        self.name = name
        self.store = store
        self.config = config or ServerConfig()
        self.document = document or Document()
        self.clients: set[Client] = set()
        self.awareness = AwarenessStates(self.config.awareness_entries_per_room)
        self._latest = 0  # the store batch holding the newest update taken
        self._reveals: deque[tuple[int, Callable[[], None]]] = deque()  # waiting for their batch
        self._awaited = 0  # the newest batch the store will tell this room about

    @property
    def doc(self) -> Doc[Any]:
        return self.document.doc

    def load(self, updates: list[bytes]) -> None:
        """Apply a stored history (on the calling thread; `Rooms` builds it off the loop)."""
        self.document = Document.build(updates)

    def join(self, client: Client) -> None:
        self.clients.add(client)
        client.send(encode_sync_step1(self.doc.get_state()))
        client.send_awareness(self.awareness.current())

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        if gone := self.awareness.drop(client):
            for other in self.clients:
                other.send_awareness(gone)

    def receive(self, client: Client, data: bytes) -> int:
        """Handle one message from `client`; raises `ProtocolError` if it is malformed, and
        `LimitExceeded` (nothing changed) if it goes past a limit. Returns the bytes of work it
        cost, which its sender's pace is charged: its size, plus the document when the update
        forced a copy of it (an item whose origin is another client's missing item)."""
        message = parse(data)
        if isinstance(message, SyncMessage):
            return len(data) + self._sync(client, message)
        if isinstance(message, AwarenessMessage):
            self._aware(client, message)
        elif isinstance(message, QueryAwareness):
            client.send_awareness(self.awareness.current())
        return len(data)

    def _sync(self, client: Client, message: SyncMessage) -> int:
        if message.step == SyncStep.STEP1:
            reply = encode_sync_step2(self._update_since(message.payload))
            self._reveal(self._latest, lambda: client.send(reply))
        elif message.payload != _EMPTY_UPDATE:
            return self._take(client, message.payload)
        return 0

    def _take(self, client: Client, update: bytes) -> int:
        document = self.document
        limit = self.config.max_document_bytes
        if document.size + len(update) > limit and document.measure() + len(update) > limit:
            raise LimitExceeded(TOO_LARGE, DOCUMENT_TOO_LARGE)
        try:
            document.add(update)
        except ValueError:  # it did not decode: nothing was applied
            raise ProtocolError("sync update does not decode") from None
        if document.held_bytes > self._held_limit():  # just held, past the bound: refused, not stored
            document.held.pop()
            document.held_bytes -= len(update)
            raise LimitExceeded(HELD_TOO_LONG, MISSING_PREDECESSORS)
        batch = self._latest = self.store.append(self.name, update)
        message = encode_update(update)
        self._reveal(batch, lambda: self._broadcast(message, exclude=client))
        return document.copied

    def _held_limit(self) -> int:
        return _HELD_PER_MESSAGE * self.config.max_message_bytes

    def _update_since(self, state: bytes) -> bytes:
        try:
            return self.doc.get_update(state)
        except ValueError:
            raise ProtocolError("sync step 1 carries no valid state vector") from None

    def _aware(self, client: Client, message: AwarenessMessage) -> None:
        limit = self.config.awareness_state_bytes
        if any(len(entry.state) > limit for entry in message.entries):  # characters: at most the bytes
            raise LimitExceeded(TOO_BIG, "awareness state too large")
        taken = self.awareness.apply(message.entries, client)
        for other in self.clients:  # to the sender too: y-websocket counts it as a sign of life
            other.send_awareness(taken)

    def _reveal(self, batch: int, send: Callable[[], None]) -> None:
        """Run `send` once `batch` is durable, after every reveal made before it."""
        if not self._reveals and self.store.is_durable(batch):
            send()
            return
        self._reveals.append((batch, send))
        if batch > self._awaited:
            self._awaited = batch
            self.store.when_durable(batch, self._release)

    def _release(self) -> None:
        while self._reveals and self.store.is_durable(self._reveals[0][0]):
            self._reveals.popleft()[1]()

    def _broadcast(self, message: bytes, exclude: Client | None = None) -> None:
        for client in self.clients:
            if client is not exclude:
                client.send(message)


class Rooms:
    """The rooms in memory, by name."""

    def __init__(self, store: UpdateStore, config: ServerConfig | None = None) -> None:
        self.store = store
        self.config = config or ServerConfig()
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}

    async def join(self, name: str, client: Client) -> Room:
        """Put `client` in room `name`, loading the room if it is not in memory; `LimitExceeded`
        if it is a new document past the user's `max_documents_per_user`."""
        while True:
            room = self._rooms.get(name)
            if room is None:
                loading = self._loading.get(name) or self._start_loading(name)
                room = await asyncio.shield(loading)  # a waiter that gives up cancels nobody's load
            if self._rooms.get(name) is room:  # not closed while we waited
                room.join(client)
                return room

    def leave(self, room: Room, client: Client) -> None:
        room.leave(client)
        if not room.clients and self._rooms.get(room.name) is room:
            del self._rooms[room.name]  # its updates are in the store, or in its pending batch

    def _start_loading(self, name: str) -> asyncio.Task[Room]:
        task = asyncio.create_task(self._load(name), name=f"sync-load {name}")
        self._loading[name] = task
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen by its waiters
        return task

    async def _load(self, name: str) -> Room:
        try:
            updates = await self.store.load(name)
            if not updates:
                await self._check_new_document(name)
            document = await asyncio.to_thread(Document.build, updates) if updates else Document()
            room = self._rooms[name] = Room(name, self.store, self.config, document)
            return room
        finally:
            del self._loading[name]

    async def _check_new_document(self, name: str) -> None:
        owner = name.split("/", 1)[0] + "/"
        documents = await self.store.documents_of(owner[:-1])
        documents |= {other for other in (*self._rooms, *self._loading) if other.startswith(owner) and other != name}
        if len(documents) >= self.config.max_documents_per_user:
            raise LimitExceeded(TOO_LARGE, TOO_MANY_DOCUMENTS)
