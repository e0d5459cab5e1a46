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

Across instances (`fanout`, with `--pubsub`): a room also publishes what it reveals (an update
when its batch is durable, in the order of its reveals; awareness at once) through a `Relay`,
and takes what the other instances' copies publish (`Rooms.remote`). Those updates are stored
already: applied, never appended, and passed on behind the reveals waiting before them. When a
message may have been missed, the room catches up from the store (`Rooms.resync`) and sends its
clients only what it lacked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Protocol

from pycrdt import Doc

from ..config import ServerConfig
from ._reader import Reader
from .awareness import AwarenessStates
from .client import TOO_BIG, Client
from .document import Document
from .errors import ProtocolError
from .limits import DOCUMENT_TOO_LARGE, MISSING_PREDECESSORS, TOO_MANY_DOCUMENTS, LimitExceeded
from .protocol import (
    AwarenessEntry,
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

__all__ = ["Relay", "Relayed", "Room", "Rooms"]

log = logging.getLogger(__name__)

_EMPTY_UPDATE = b"\x00\x00"
_HELD_PER_MESSAGE = 4  # updates held for missing predecessors: at most this many max-size messages
TOO_LARGE = 4413
HELD_TOO_LONG = 4412
_EARLY_MESSAGES = 1024  # remote messages kept for a room still loading; past that it resyncs after
_REMOTE_AWARENESS_SECONDS = 45.0  # y-protocols renews every 15 s and times out after 30
_RESYNC_RETRY_SECONDS = 2.0
_RELOADS_AT_ONCE = 2  # after a failed reload (the store down): tried again while the room is held


class Relayed(IntEnum):
    """What instances send each other about a room."""

    UPDATE = 1  # an update, durable in the store
    AWARENESS = 2  # an awareness message, as a client receives it
    RESYNC = 3  # "reload this room from the store": updates of it may have been lost


class Relay(Protocol):
    """The other instances (`fanout.Fanout`)."""

    def publish(self, room: str, kind: Relayed, payload: bytes) -> None: ...

    async def subscribe(self, room: str) -> None: ...

    def unsubscribe(self, room: str) -> None: ...


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
        self.relay: Relay | None = None  # the other instances' copies, with --pubsub
        self.doubt: Callable[[], None] = lambda: None  # called when this copy may have missed updates
        self._remote_seen: dict[int, float] = {}  # remote awareness ids: when last heard of

    @property
    def doc(self) -> Doc[Any]:
        return self.document.doc

    def load(self, updates: list[bytes]) -> None:
        """Apply a stored history (on the calling thread; `Rooms` builds it off the loop)."""
        self.document = Document.build(updates)

    def join(self, client: Client) -> None:
        self.clients.add(client)
        client.send(encode_sync_step1(self.doc.get_state()))
        if self._remote_seen:
            self._forget_silent_remotes()
        client.send_awareness(self.awareness.current())

    def leave(self, client: Client) -> None:
        self.clients.discard(client)
        if gone := self.awareness.drop(client):
            for other in self.clients:
                other.send_awareness(gone)
            self._publish(Relayed.AWARENESS, gone)

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
        if self.relay is None:
            self._reveal(batch, lambda: self._broadcast(message, exclude=client))
        else:
            relay = self.relay

            def reveal() -> None:
                self._broadcast(message, exclude=client)
                relay.publish(self.name, Relayed.UPDATE, update)

            self._reveal(batch, reveal)
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
        self._publish(Relayed.AWARENESS, taken)

    def _publish(self, kind: Relayed, entries: list[AwarenessEntry]) -> None:
        if self.relay is not None and entries:
            self.relay.publish(self.name, kind, encode_awareness(entries))

    # --- from the other instances ---

    def take_remote(self, update: bytes) -> None:
        """Apply an update another instance's copy took (stored already: not appended) and pass
        on what it adds, behind the reveals waiting now. Never refused: refusing what is stored
        would only leave this copy behind the store."""
        document = self.document
        held = len(document.held)
        before = self.doc.get_state() if held else b""  # only needed when held updates may come free
        try:
            document.add(update)
        except ValueError:
            log.warning("sync: a remote update of %s does not decode; resyncing", self.name)
            self.doubt()
            return
        if document.held and document.held[-1] is update:  # its predecessors never came here
            self.doubt()
            return
        if not held and not document.held:
            message = encode_update(update)
        elif self.doc.get_state() != before:  # held updates came free with it: send them too
            message = encode_update(self.doc.get_update(before))
        else:
            return
        self._reveal(0, lambda: self._broadcast(message))

    def take_remote_awareness(self, data: bytes) -> None:
        """Awareness from another instance's clients: kept (for clients joining later) and passed on."""
        message = parse(data)
        if not isinstance(message, AwarenessMessage):
            raise ProtocolError("not an awareness message")
        taken: list[AwarenessEntry] = []
        now = time.monotonic()
        for entry in message.entries:  # each remote id owns itself: its own instance says when it leaves
            taken += self.awareness.apply((entry,), _RemoteId(entry.client_id))
            self._remote_seen[entry.client_id] = now
        for client in self.clients:
            client.send_awareness(taken)

    def _forget_silent_remotes(self) -> None:
        """Drop remote awareness ids not renewed for `_REMOTE_AWARENESS_SECONDS`: their instance
        is gone without saying so (a client renews its state every 15 s), so nobody else will."""
        cutoff = time.monotonic() - _REMOTE_AWARENESS_SECONDS
        gone: list[AwarenessEntry] = []
        for client_id in [client_id for client_id, seen in self._remote_seen.items() if seen < cutoff]:
            del self._remote_seen[client_id]
            gone += self.awareness.drop(_RemoteId(client_id))
        for client in self.clients:
            client.send_awareness(gone)

    def catch_up(self, stored: Doc[Any]) -> bool:
        """Apply what the stored document has that this copy lacks and pass it on; False if nothing."""
        state = self.doc.get_state()
        difference = stored.get_update(state)
        if _adds_nothing(difference, self.doc.get_update(state)):
            return False
        try:
            self.document.add(difference)
        except ValueError:
            log.exception("sync: the stored state of %s does not apply", self.name)
            return False
        message = encode_update(difference)
        self._reveal(0, lambda: self._broadcast(message))
        return True

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


class _RemoteId(tuple[str, int]):
    """The owner of an awareness id announced on another instance."""

    def __new__(cls, client_id: int) -> _RemoteId:
        return super().__new__(cls, ("remote", client_id))


def _adds_nothing(difference: bytes, own: bytes) -> bool:
    """Whether `difference` (a stored state past this copy's state vector) brings nothing: no
    structs, and only deletions that `own` (this copy's update from its own state vector: its
    delete set) holds already."""
    theirs, mine = _deletions(difference), _deletions(own)
    if theirs is None or mine is None:
        return False
    for client, ranges in theirs.items():
        covered = _merged(mine.get(client, []))
        for start, end in ranges:
            if not any(lo <= start and end <= hi for lo, hi in covered):
                return False
    return True


def _deletions(update: bytes) -> dict[int, list[tuple[int, int]]] | None:
    """The delete set of an update that has no structs, as [start, end) per client; None if it has structs."""
    reader = Reader(update)
    try:
        if reader.var_uint():
            return None
        deleted: dict[int, list[tuple[int, int]]] = {}
        for _ in range(reader.var_uint()):
            ranges = deleted.setdefault(reader.var_uint(), [])
            for _ in range(reader.var_uint()):
                clock = reader.var_uint()
                ranges.append((clock, clock + reader.var_uint()))
    except ProtocolError:
        return None
    return deleted


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class Rooms:
    """The rooms in memory, by name."""

    def __init__(self, store: UpdateStore, config: ServerConfig | None = None) -> None:
        self.store = store
        self.config = config or ServerConfig()
        self.relay: Relay | None = None  # set before the first join, with --pubsub
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._early: dict[str, list[tuple[Relayed, bytes]]] = {}  # remote messages for rooms still loading
        self._reading: set[str] = set()  # loading rooms whose subscription wait is over
        self._resync_after_load: set[str] = set()
        self._resyncing: dict[str, asyncio.Task[None]] = {}
        self._resync_again: set[str] = set()
        # After a reconnect every room held reloads: a few at a time, so that the store's thread
        # (one, in submission order) runs commits between them rather than after them all.
        self._reloads = asyncio.Semaphore(_RELOADS_AT_ONCE)

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
            if self.relay is not None:
                self.relay.unsubscribe(room.name)

    def _start_loading(self, name: str) -> asyncio.Task[Room]:
        task = asyncio.create_task(self._load(name), name=f"sync-load {name}")
        self._loading[name] = task
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen by its waiters
        return task

    async def _load(self, name: str) -> Room:
        try:
            if self.relay is not None:  # subscribed before reading: nothing falls between the two
                self._early[name] = []
                await self.relay.subscribe(name)
                self._reading.add(name)
            updates = await self.store.load(name)
            if not updates:
                await self._check_new_document(name)
            document = await asyncio.to_thread(Document.build, updates) if updates else Document()
            room = self._rooms[name] = Room(name, self.store, self.config, document)
            if self.relay is not None:
                self._attach(room)
            return room
        except BaseException:
            if self.relay is not None and name not in self._rooms:
                self.relay.unsubscribe(name)
            raise
        finally:
            del self._loading[name]
            self._early.pop(name, None)
            self._reading.discard(name)
            self._resync_after_load.discard(name)

    def _attach(self, room: Room) -> None:
        """Connect a room just loaded to the other instances, and apply what they sent meanwhile."""
        room.relay = self.relay
        room.doubt = lambda: self.resync(room.name)
        for kind, payload in self._early.get(room.name, ()):
            self._deliver(room, kind, payload)
        if room.name in self._resync_after_load:
            self.resync(room.name)

    # --- from the other instances (`fanout.Listener`) ---

    def remote(self, name: str, kind: Relayed, payload: bytes) -> None:
        """A message another instance's copy of room `name` published."""
        room = self._rooms.get(name)
        if room is not None:
            self._deliver(room, kind, payload)
        elif (early := self._early.get(name)) is not None:
            if len(early) < _EARLY_MESSAGES:
                early.append((kind, payload))
            else:
                self._resync_after_load.add(name)

    def subscribed(self, name: str) -> None:
        """Room `name`'s subscription is confirmed (again, after a reconnect): catch up with the
        store, which holds everything published before it."""
        if name in self._rooms:
            self.resync(name)
        elif name in self._reading:  # it reads the store already, maybe before what came meanwhile
            self._resync_after_load.add(name)

    def _deliver(self, room: Room, kind: Relayed, payload: bytes) -> None:
        if kind == Relayed.UPDATE:
            room.take_remote(payload)
        elif kind == Relayed.AWARENESS:
            room.take_remote_awareness(payload)
        elif kind == Relayed.RESYNC:
            self.resync(room.name)

    def resync(self, name: str) -> None:
        """Catch room `name` up with the store, in the background; one reload at a time per room,
        and one more if asked again meanwhile."""
        if name in self._resyncing:
            self._resync_again.add(name)
        elif name in self._rooms:
            self._resyncing[name] = asyncio.create_task(self._resync(name), name=f"sync-resync {name}")

    async def _resync(self, name: str) -> None:
        try:
            while (room := self._rooms.get(name)) is not None:
                self._resync_again.discard(name)
                try:
                    async with self._reloads:
                        updates = await self.store.load(name)
                        stored = await asyncio.to_thread(Document.build, updates)
                except Exception:
                    log.exception("sync: reloading %s from the store failed; trying again", name)
                    await asyncio.sleep(_RESYNC_RETRY_SECONDS)
                    self._resync_again.add(name)
                else:
                    if self._rooms.get(name) is room and room.catch_up(stored.doc):
                        log.info("sync: %s caught up with the store", name)
                if name not in self._resync_again:
                    return
        finally:
            del self._resyncing[name]
            self._resync_again.discard(name)

    async def _check_new_document(self, name: str) -> None:
        owner = name.split("/", 1)[0] + "/"
        documents = await self.store.documents_of(owner[:-1])
        documents |= {other for other in (*self._rooms, *self._loading) if other.startswith(owner) and other != name}
        if len(documents) >= self.config.max_documents_per_user:
            raise LimitExceeded(TOO_LARGE, TOO_MANY_DOCUMENTS)
