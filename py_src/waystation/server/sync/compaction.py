"""Squashing a document's history of updates into one update that holds the same document.

Two ways, with their measured sizes for 1,000 appends then 500 deletions (1,500 updates,
33.7 kB): `merge_updates` keeps every item, deleted ones included (14.0 kB); re-encoding
the applied document lets deleted content be garbage-collected (1.5 kB). But a document
drops what it holds pending (updates whose predecessors it has not seen: a client's
offline edits can arrive that way) when it is re-encoded, so the re-encoding is used only
when the merge holds nothing beyond the document; otherwise the merge is kept, which
loses nothing.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, get_update, merge_updates

from ._reader import Reader
from .errors import ProtocolError

__all__ = ["holds_pending", "squash"]


def squash(updates: list[bytes]) -> bytes:
    """One update equivalent to applying all of `updates`, as small as is safe."""
    merged = updates[0] if len(updates) == 1 else merge_updates(*updates)
    doc: Doc[Any] = Doc()
    doc.apply_update(merged)
    state = doc.get_state()
    return merged if holds_pending(merged, state) else doc.get_update()


def holds_pending(update: bytes, state: bytes) -> bool:
    """True if `update` has items or deletions that a document at `state` (its state vector,
    after applying `update`) could not integrate: they wait for updates not seen yet."""
    beyond = get_update(update, state)
    covered = _state_vector(state)
    reader = Reader(beyond)
    try:
        if reader.var_uint() != 0:  # groups of items the state does not cover
            return True
        for _ in range(reader.var_uint()):  # the delete set: per client, ranges (clock, length)
            client = reader.var_uint()
            for _ in range(reader.var_uint()):
                clock, length = reader.var_uint(), reader.var_uint()
                if clock + length > covered.get(client, 0):
                    return True
        reader.end()
    except ProtocolError:
        return True  # an encoding this does not read: assume the worst
    return False


def _state_vector(state: bytes) -> dict[int, int]:
    reader = Reader(state)
    return {reader.var_uint(): reader.var_uint() for _ in range(reader.var_uint())}
