"""Rooms: one shared document each, loaded from the store when its first client comes and
dropped from memory when its last client leaves.

A room relays what its clients send: a sync step 1 is answered with the missing updates
(step 2), an update is applied to the room's document, buffered for the store and passed
on to every other client, awareness is passed on to everyone. Handling a message never
awaits, so messages apply in the order they arrive, and a client that has had its sync
step 2 answered knows the server holds everything it sent before.

Concurrent first clients of a room share one load (a map of in-flight loads), and each
joins the room that is registered once its load is done: no start lock for anyone to
wait on forever (pycrdt-websocket's `YRoom._start_lock`, shared/DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pycrdt import Doc, merge_updates

from .awareness import AwarenessStates
from .client import Client
from .compaction import holds_pending
from .errors import ProtocolError
from .protocol import (
    AwarenessMessage,
    QueryAwareness,
    SyncMessage,
    SyncStep,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
    parse,
)
from .store import UpdateStore

__all__ = ["Room", "Rooms"]

log = logging.getLogger(__name__)

_EMPTY_UPDATE = b"\x00\x00"


class Room:
    """One document and the clients editing it."""

    def __init__(self, name: str, store: UpdateStore) -> None:
        self.name = name
        self.store = store
        self.doc: Doc[Any] = Doc()
        self.clients: set[Client] = set()
        self.awareness = AwarenessStates()
        self._held: tuple[bytes, ...] | None = None  # while pending: the updates the document is rebuilt from

    def load(self, updates: list[bytes]) -> None:
        """Apply the stored history, merged into one update (see `_integrate`)."""
        if not updates:
            return
        try:
            self._integrate(merge_updates(*updates))
        except ValueError:  # never stored by this server; keep the rest readable
            log.error("sync: room %s has an unreadable stored update; applying them one by one", self.name)
            for update in updates:
                with contextlib.suppress(ValueError):
                    self._integrate(update)

    def join(self, client: Client) -> None:
        self.clients.add(client)
        client.send(encode_sync_step1(self.doc.get_state()))
        if present := self.awareness.current():
            client.send(encode_awareness(present))

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        if gone := self.awareness.drop(client):
            self._broadcast(encode_awareness(gone))

    def receive(self, client: Client, data: bytes) -> None:
        """Handle one message from `client`; raises `ProtocolError` if it is malformed."""
        message = parse(data)
        if isinstance(message, SyncMessage):
            self._sync(client, message)
        elif isinstance(message, AwarenessMessage):
            self.awareness.apply(message.entries, client)
            self._broadcast(data)  # to the sender too: y-websocket counts it as a sign of life
        elif isinstance(message, QueryAwareness):
            client.send(encode_awareness(self.awareness.current()))

    def _sync(self, client: Client, message: SyncMessage) -> None:
        if message.step == SyncStep.STEP1:
            client.send(encode_sync_step2(self._update_since(message.payload)))
        elif message.payload != _EMPTY_UPDATE:
            self._apply(message.payload)
            self.store.append(self.name, message.payload)
            self._broadcast(encode_update(message.payload), exclude=client)

    def _update_since(self, state: bytes) -> bytes:
        try:
            return self.doc.get_update(state)
        except ValueError:
            raise ProtocolError("sync step 1 carries no valid state vector") from None

    def _apply(self, update: bytes) -> None:
        try:
            self._integrate(update)
        except ValueError:  # decoding fails before anything is integrated: the doc is unchanged
            raise ProtocolError("sync update does not decode") from None

    def _integrate(self, update: bytes) -> None:
        """Apply `update` to the document; ValueError if it does not decode.

        pycrdt 0.14.13 can lose or misplace items when an update fills the gap before updates
        it holds pending (tests/unit/test_sync_convergence.py), while one merged update applied
        to a new document comes out right. So while the document holds pending updates, it is
        rebuilt from one merge instead of being applied to.
        """
        if self._held is None:
            self.doc.apply_update(update)
            if holds_pending(update, self.doc.get_state()):
                self._held = self.doc.get_update(), update
            return
        merged = merge_updates(*self._held, update)
        doc: Doc[Any] = Doc()
        doc.apply_update(merged)
        self.doc = doc
        self._held = (merged,) if holds_pending(merged, doc.get_state()) else None

    def _broadcast(self, message: bytes, exclude: Client | None = None) -> None:
        for client in self.clients:
            if client is not exclude:
                client.send(message)


class Rooms:
    """The rooms in memory, by name."""

    def __init__(self, store: UpdateStore) -> None:
        self.store = store
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def join(self, name: str, client: Client) -> Room:
        """Put `client` in room `name`, loading the room if it is not in memory."""
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
            del self._rooms[room.name]
            self._flush_soon()

    def _start_loading(self, name: str) -> asyncio.Task[Room]:
        task = asyncio.create_task(self._load(name), name=f"sync-load {name}")
        self._loading[name] = task
        return task

    async def _load(self, name: str) -> Room:
        try:
            room = Room(name, self.store)
            room.load(await self.store.load(name))
            self._rooms[name] = room
            return room
        finally:
            del self._loading[name]

    def _flush_soon(self) -> None:
        task = asyncio.create_task(self.store.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled():
            task.exception()  # seen: the store logged it and keeps the updates for its next flush
