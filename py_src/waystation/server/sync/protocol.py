"""The y-websocket wire protocol: parsing what clients send, encoding what the server sends.

Every WebSocket message is one binary frame, `varUint type` then a body
(y-protocols `sync.js`, `awareness.js`, `auth.js`; y-websocket `src/y-websocket.js`):

    0 SYNC             varUint step (0 step 1, 1 step 2, 2 update), varUint8Array payload
    1 AWARENESS        varUint8Array awareness update
    2 AUTH             varUint 0 (permission denied), varString reason   (server -> client)
    3 QUERY_AWARENESS  nothing

Parsing is strict (`_reader`): a message that does not decode exactly raises `ProtocolError`,
and so does a sync payload that is not exactly a state vector or a Yjs update (`yupdate`):
pycrdt would apply an update with junk after it, and store and relay the junk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

from pycrdt import create_awareness_message, create_update_message, write_var_uint

from ._reader import Reader
from .errors import ProtocolError
from .yupdate import UpdateSummary, check_state_vector, check_update

__all__ = [
    "AwarenessEntry",
    "AwarenessMessage",
    "Message",
    "MessageType",
    "QueryAwareness",
    "SyncMessage",
    "SyncStep",
    "encode_awareness",
    "encode_permission_denied",
    "encode_sync_step1",
    "encode_sync_step2",
    "encode_update",
    "parse",
]

class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncStep(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True)
class SyncMessage:
    step: SyncStep
    payload: bytes  # a state vector for STEP1, an update otherwise
    summary: UpdateSummary | None = None  # the update's, for STEP2 and UPDATE


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text as sent; "null" means the client left


@dataclass(frozen=True)
class AwarenessMessage:
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True)
class QueryAwareness:
    pass


Message = SyncMessage | AwarenessMessage | QueryAwareness


def parse(data: bytes) -> Message:
    """Decode one client message, or raise `ProtocolError`."""
    reader = Reader(data)
    kind = reader.var_uint()
    if kind == MessageType.SYNC:
        step = reader.var_uint()
        if step not in SyncStep.__members__.values():
            raise ProtocolError(f"unknown sync step {step}")
        message: Message = _sync_message(SyncStep(step), reader.var_bytes())
    elif kind == MessageType.AWARENESS:
        message = AwarenessMessage(_awareness_entries(reader.var_bytes()))
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    else:
        raise ProtocolError(f"unknown message type {kind}")
    reader.end()
    return message


def _sync_message(step: SyncStep, payload: bytes) -> SyncMessage:
    if step == SyncStep.STEP1:
        check_state_vector(payload)
        return SyncMessage(step, payload)
    return SyncMessage(step, payload, check_update(payload))


def _awareness_entries(update: bytes) -> tuple[AwarenessEntry, ...]:
    reader = Reader(update)
    entries = []
    for _ in range(reader.var_uint()):
        client_id, clock, state = reader.var_uint(), reader.var_uint(), reader.var_string()
        try:
            json.loads(state)  # relayed to every client, whose JSON.parse must not throw
        except ValueError:
            raise ProtocolError(f"awareness state of client {client_id} is not JSON") from None
        entries.append(AwarenessEntry(client_id, clock, state))
    reader.end()
    return tuple(entries)


def encode_sync_step1(state: bytes) -> bytes:
    return bytes([MessageType.SYNC, SyncStep.STEP1]) + _var_bytes(state)


def encode_sync_step2(update: bytes) -> bytes:
    return bytes([MessageType.SYNC, SyncStep.STEP2]) + _var_bytes(update)


def encode_update(update: bytes) -> bytes:
    return create_update_message(update)


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    body = [write_var_uint(len(entries))]
    for entry in entries:
        body += [write_var_uint(entry.client_id), write_var_uint(entry.clock), _var_bytes(entry.state.encode())]
    return create_awareness_message(b"".join(body))


def encode_permission_denied(reason: str) -> bytes:
    return bytes([MessageType.AUTH, 0]) + _var_bytes(reason.encode())


def _var_bytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data
