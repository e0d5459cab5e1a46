"""A room's document: a pycrdt Doc that never holds anything pending, the updates held aside
until their predecessors come, and a cheap upper bound of its encoded size.

pycrdt 0.14.13 can lose or misplace items when an update fills the gap before updates a Doc
holds pending (tests/unit/test_sync_convergence.py's xfail), while updates applied in causal
order come out right. So an update whose predecessors are missing (`integrable` says so from
its bytes, without touching the document) is never applied: it is held aside, bounded by the
caller, and applied once the gap is filled. Each later update costs one cheap re-check of
the held ones, never a rebuild of the document. In the rare case the check cannot see (an
item whose origin is another client's missing item), the Doc is copied once without it
(`without_pending`: its encoding leaves pending updates out) and the update is held.

Applying a history costs time and memory linear in it, up to yrs' own cost per update (see
`compaction`); `Document.build` is safe on a worker thread: a pycrdt Doc may move between threads.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, get_update

from ._reader import Reader
from .errors import ProtocolError

__all__ = ["Document", "holds_pending", "integrable", "state_vector", "without_pending"]

_MAX_CLIENTS = 64  # clients an update adds to before `integrable` stops looking
_ALL = 0xFFFFFFFF  # a clock past any (yrs' clocks are u32)


class Document:
    def __init__(self, doc: Doc[Any] | None = None) -> None:
        self.doc: Doc[Any] = doc if doc is not None else Doc()
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.size = 0  # encoded size, at most: the last measured size plus every update since
        self.copied = 0  # bytes of document the last `add` copied (see `without_pending`)

    @classmethod
    def build(cls, updates: list[bytes]) -> Document:
        """The document of a stored history, applied in order (a history is never merged
        first: see `compaction`); updates that do not decode are skipped."""
        document = cls()
        for update in updates:
            try:
                document.add(update)
            except ValueError:
                continue  # never stored by this server; keep the rest readable
        document.measure()
        return document

    def add(self, update: bytes) -> None:
        """Apply `update`, or hold it until its predecessors come; ValueError (and the document
        unchanged) if it does not decode."""
        self.copied = 0
        self.size += len(update)
        if integrable(update, self.doc.get_state()) is False:
            self._hold(update)
        elif self._apply(update) and self.held:
            self._retry_held()

    def measure(self) -> int:
        """The exact encoded size (the document's encoding plus what it holds): O(document)."""
        self.size = len(self.doc.get_update()) + self.held_bytes
        return self.size

    def _apply(self, update: bytes) -> bool:
        self.doc.apply_update(update)
        if not holds_pending(update, self.doc.get_state()):
            return True
        self.copied += self.size
        self.doc = without_pending(self.doc)
        self._hold(update)
        return False

    def _hold(self, update: bytes) -> None:
        self.held.append(update)
        self.held_bytes += len(update)

    def _retry_held(self) -> None:
        progress = True
        while progress:
            progress = False
            for update in list(self.held):
                if integrable(update, self.doc.get_state()) is False:
                    continue
                self.held.remove(update)
                self.held_bytes -= len(update)
                progress = self._apply(update) or progress


def integrable(update: bytes, state: bytes) -> bool | None:
    """Whether a document at `state` (its state vector) can integrate all of `update` now: for
    every client, the update's structs start at or before the clock the document has, and its
    deletions touch nothing it lacks. None if the update has too many clients to tell cheaply
    (then apply it and ask `holds_pending`). An item's origin in another client's missing
    structs is not seen here; `holds_pending` after applying catches that rare case.

    Costs one pass of yrs over `update` per client it adds to, none over the document: yrs cuts
    the update down to what `state` lacks, whose first group's header says where it starts; that
    client is then given as complete and the next group comes first."""
    have = state_vector(state)
    known = dict(have)
    for _ in range(_MAX_CLIENTS):
        reader = Reader(get_update(update, _encode_state(known)))
        try:
            if reader.var_uint() == 0:
                return not _deletes_past(reader, known)
            reader.var_uint()  # structs in the group
            client, first = reader.var_uint(), reader.var_uint()
        except ProtocolError:
            return False
        if first > have.get(client, 0):
            return False
        known[client] = _ALL  # its own deletions are its business; `holds_pending` checks after
    return None


def holds_pending(update: bytes, state: bytes) -> bool:
    """True if `update` has items or deletions that a document at `state` (its state vector,
    after applying `update`) could not integrate: they wait for updates not seen yet."""
    beyond = get_update(update, state)
    covered = state_vector(state)
    reader = Reader(beyond)
    try:
        if reader.var_uint() != 0:  # groups of items the state does not cover
            return True
        return _deletes_past(reader, covered)
    except ProtocolError:
        return True  # an encoding this does not read: assume the worst


def without_pending(doc: Doc[Any]) -> Doc[Any]:
    """A copy of `doc` without the updates it holds pending (its encoding leaves them out)."""
    clean: Doc[Any] = Doc()
    clean.apply_update(doc.get_update())
    return clean


def state_vector(state: bytes) -> dict[int, int]:
    """The clocks of a state vector that yrs encoded (`Doc.get_state`): {client: clock}.

    Read in one loop over the bytes, not a reader call per number: this runs twice for every
    update a room takes, and a call per varint cost ~40 us of the ~75 us an update took."""
    numbers, value, shift = [], 0, 0
    for byte in state:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            numbers.append(value)
            value = shift = 0
        else:
            shift += 7
    if not numbers or len(numbers) != 1 + 2 * numbers[0] or shift:
        raise ProtocolError("not a state vector")
    return dict(zip(numbers[1::2], numbers[2::2]))


def _encode_state(clocks: dict[int, int]) -> bytes:
    out = bytearray()
    for number in (len(clocks), *(n for pair in clocks.items() for n in pair)):
        while number > 0x7F:
            out.append(number & 0x7F | 0x80)
            number >>= 7
        out.append(number)
    return bytes(out)


def _deletes_past(reader: Reader, covered: dict[int, int]) -> bool:
    for _ in range(reader.var_uint()):  # the delete set: per client, ranges (clock, length)
        client = reader.var_uint()
        for _ in range(reader.var_uint()):
            clock, length = reader.var_uint(), reader.var_uint()
            if clock + length > covered.get(client, 0):
                return True
    reader.end()
    return False
