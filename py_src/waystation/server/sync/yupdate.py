"""Strict reading of the Yjs update encoding v1, the payload of sync step 2 and update messages.

pycrdt's decoder stops after the delete set and ignores whatever follows, so a valid update
with a megabyte of junk appended would be applied, stored and sent to every client. This
walks the whole encoding (Yjs `readClientsStructRefs`, `readItemContent`, `readDeleteSet`,
lib0 `readAny`) and requires the payload to end exactly after the delete set:

    update      varUint groups, groups x (varUint count, varUint client, varUint clock, count x struct),
                delete set: varUint clients x (varUint client, varUint ranges x (varUint clock, varUint len))
    struct      info byte: bits 0-4 its kind (0 GC, 10 Skip, 1-9 an item's content),
                bit 7 origin ID, bit 6 right origin ID, bit 5 parentSub (Yjs BIT8, BIT7, BIT6);
                GC and Skip: varUint len. An item: [origin] [right origin], and with neither of
                them the parent (varUint 1 then a root name, or 0 then an ID) and [parentSub
                string]; then its content.
    ID          varUint client, varUint clock

It also refuses what a decoder on the other side would choke on: JSON that JavaScript's
`JSON.parse` rejects (Embed, Format and JSON content), and values nested deeper than
`MAX_DEPTH` (pycrdt 0.14.13 overflows its stack and kills the process on an array nested
100,000 deep, a 200 kB message). Strings are skipped by their length without checking that
they are UTF-8: pycrdt refuses an update with any string that is not (a test keeps it so),
and the check cost a fifth of the time on text-heavy updates.

Speed: linear, strings and binaries skipped by length, IDs and delete sets matched in C, so
the cost is per struct and per value, not per byte. Measured (CPU time, 2 shared cores):
a 17 MB document of dense text edits and maps of every value kind, 28 MB/s, about as fast
as pycrdt applies it; the densest inputs an attacker can build take 40-145 ms per MiB (1 MiB
of 5-byte items holding one null, the worst found: 143 ms, where pycrdt takes 21 ms).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .errors import ProtocolError

__all__ = ["MAX_DEPTH", "UpdateSummary", "check_state_vector", "check_update"]

MAX_DEPTH = 128  # nesting of Any values; serde_json (pycrdt's JSON reader) stops at 128 too
_MAX_VAR_UINT = 2**53 - 1  # lib0 reads numbers into JS numbers
_GC, _SKIP = 0, 10
_ORIGIN, _RIGHT_ORIGIN, _PARENT_SUB, _CONTENT = 0x80, 0x40, 0x20, 0x1F
_TYPES_WITH_NAME = (3, 5)  # YXmlElement and YXmlHook carry a node name; 0-6 are the Y types
_FIXED_SIZE_VALUES = {124: 4, 123: 8, 122: 8}  # float32, float64, bigint64
_EMPTY_VALUES = frozenset((127, 126, 121, 120))  # undefined, null, false, true
_OBJECT = 118
# n varUints of at most 2**53 - 1 (8 bytes, the last below 16), matched in C: client IDs are
# random 32 to 53-bit numbers, so most IDs take 10 or more bytes
_VAR_UINT = rb"(?:[\x00-\x7f]|[\x80-\xff]{1,6}[\x00-\x7f]|[\x80-\xff]{7}[\x00-\x0f])"
_VAR_UINTS = [re.compile(_VAR_UINT * n).match for n in range(5)]
_TOO_LARGE = re.compile(rb"[\x80-\xff]{8}|[\x80-\xff]{7}[\x10-\x7f]").search  # a varUint over 2**53 - 1
_HIGH_BYTES = bytes(range(0x80, 0x100))


@dataclass(frozen=True)
class UpdateSummary:
    """What a valid update holds, for callers that count without decoding again."""

    structs: int  # GC, Skip and item structs, over all clients
    deleted_ranges: int  # (client, clock, length) ranges in the delete set
    length: int  # the update's size in bytes


def check_update(update: bytes) -> UpdateSummary:
    """Summarise a Yjs v1 update, or raise `ProtocolError` saying what is wrong and where."""
    try:
        pos, structs = _struct_groups(update)
        pos, deleted_ranges = _delete_set(update, pos)
    except IndexError:  # every read indexes `update`, so running off its end lands here
        raise ProtocolError(f"update ends inside its encoding (after {len(update)} bytes)") from None
    if pos != len(update):
        raise ProtocolError(f"update has {len(update) - pos} bytes after its delete set")
    return UpdateSummary(structs, deleted_ranges, len(update))


def check_state_vector(state: bytes) -> int:
    """The number of clients in a state vector (varUint n, n x (client, clock)), or
    `ProtocolError` if it is not exactly that."""
    try:
        clients, pos = _uint(state, 0)
        pos = _skip_many_uints(state, pos, 2 * clients)  # (client, clock) pairs
    except IndexError:
        raise ProtocolError(f"state vector ends inside its encoding (after {len(state)} bytes)") from None
    if pos != len(state):
        raise ProtocolError(f"state vector has {len(state) - pos} bytes after its {clients} clients")
    return clients


def _struct_groups(data: bytes) -> tuple[int, int]:
    """(position after the structs, number of structs). The hot loop: the common cases are
    inlined, since a Python function call costs as much as the rest of a struct."""
    groups, pos = _uint(data, 0)
    structs, size, ids = 0, len(data), _VAR_UINTS
    for _ in range(groups):
        count, pos = _uint(data, pos)
        pos = _skip_uints(data, pos, 2)  # client, first clock
        structs += count
        for _ in range(count):
            at = pos
            info = data[pos]
            pos += 1
            kind = info & _CONTENT
            if kind in (_GC, _SKIP):
                if info != kind:
                    raise ProtocolError(f"{'GC' if kind == _GC else 'Skip'} struct with flags {info:#04x} at byte {at}")
                pos = pos + 1 if data[pos] < 0x80 else _skip_uint(data, pos)  # length
                continue
            if info & (_ORIGIN | _RIGHT_ORIGIN):  # origin and/or right origin IDs
                n = 4 if info & _ORIGIN and info & _RIGHT_ORIGIN else 2
                match = ids[n](data, pos)
                pos = _skip_uints(data, pos, n) if match is None else match.end()
            else:
                pos = _parent(data, pos, info & _PARENT_SUB)
            if kind == 4:  # String, the most common content
                length, pos = (data[pos], pos + 1) if data[pos] < 0x80 else _uint(data, pos)
                if pos + length > size:
                    _skip(data, pos, length)  # raises
                pos += length
            elif kind == 8:  # Any values: map entries, array items
                count, pos = (data[pos], pos + 1) if data[pos] < 0x80 else _uint(data, pos)
                pos = _values(data, pos, count, 1)
            elif kind == 1:  # Deleted: a length, as common in documents with a history
                pos = pos + 1 if data[pos] < 0x80 else _skip_uint(data, pos)
            else:
                pos = _content(data, pos, kind, at)
    return pos, structs


def _delete_set(data: bytes, pos: int) -> tuple[int, int]:
    """(position after the delete set, number of ranges)."""
    clients, pos = _uint(data, pos)
    ranges = 0
    for _ in range(clients):
        pos = _skip_uint(data, pos)  # client
        count, pos = _uint(data, pos)
        ranges += count
        pos = _skip_many_uints(data, pos, 2 * count)  # (clock, length) pairs
    return pos, ranges


def _parent(data: bytes, pos: int, has_sub: int) -> int:
    """Skip an item's parent (a root type's name, or the ID of the item holding it) and its
    parentSub (the key in a map)."""
    at = pos
    named, pos = _uint(data, pos)
    if named == 1:
        pos = _string(data, pos)
    elif named == 0:
        pos = _skip_uints(data, pos, 2)
    else:
        raise ProtocolError(f"parent info {named} at byte {at} is neither 0 nor 1")
    return _string(data, pos) if has_sub else pos


def _content(data: bytes, pos: int, kind: int, at: int) -> int:
    """Skip an item's content of `kind` (`info & 31`): Yjs `contentRefs` (String, Any and
    Deleted, the common ones, are read in `_struct_groups`)."""
    if kind == 1:  # Deleted: length
        return _skip_uint(data, pos)
    if kind == 2:  # JSON: strings holding JSON or "undefined"
        count, pos = _uint(data, pos)
        for _ in range(count):
            pos = _json(data, pos, allow_undefined=True)
        return pos
    if kind == 3:  # Binary
        length, pos = _uint(data, pos)
        return _skip(data, pos, length)
    if kind == 5:  # Embed: JSON
        return _json(data, pos)
    if kind == 6:  # Format: key, JSON value
        return _json(data, _string(data, pos))
    if kind == 7:  # Type
        return _type_ref(data, pos)
    if kind == 9:  # Doc: guid, options (an object: Yjs reads opts.shouldLoad)
        pos = _string(data, pos)
        if data[pos] != _OBJECT:
            raise ProtocolError(f"subdocument options at byte {pos} are not an object")
        return _values(data, pos, 1, 1)
    raise ProtocolError(f"unknown content type {kind} at byte {at}")


def _type_ref(data: bytes, pos: int) -> int:
    at = pos
    ref, pos = _uint(data, pos)
    if ref in _TYPES_WITH_NAME:
        return _string(data, pos)
    if ref > 6:
        raise ProtocolError(f"unknown type {ref} at byte {at}")
    return pos


def _values(data: bytes, pos: int, count: int, depth: int, keyed: bool = False) -> int:
    """Skip `count` lib0 Any values (`readAny`), each after a string key if `keyed` (an
    object's entries); `depth` is their nesting. Strings are read inline: values are dense."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"values nested deeper than {MAX_DEPTH} at byte {pos}")
    size = len(data)
    for index in range(2 * count if keyed else count):
        if keyed and not index & 1:
            tag = 119  # an entry's key: a string, without a tag
        else:
            tag = data[pos]
            pos += 1
        if tag == 119:  # string
            length, pos = (data[pos], pos + 1) if data[pos] < 0x80 else _uint(data, pos)
            if pos + length > size:
                _skip(data, pos, length)  # raises
            pos += length
        elif tag in _EMPTY_VALUES:
            pass
        elif tag == 125:  # varInt
            pos = pos + 1 if data[pos] < 0x80 else _int(data, pos)
        elif tag in _FIXED_SIZE_VALUES:  # float32, float64, bigint64
            pos = _skip(data, pos, _FIXED_SIZE_VALUES[tag])
        elif tag == _OBJECT:  # varUint n, n x (string key, value)
            entries, pos = _uint(data, pos)
            pos = _values(data, pos, entries, depth + 1, keyed=True)
        elif tag == 117:  # array: varUint n, n x value
            length, pos = _uint(data, pos)
            pos = _values(data, pos, length, depth + 1)
        elif tag == 116:  # Uint8Array
            length, pos = _uint(data, pos)
            pos = _skip(data, pos, length)
        else:
            raise ProtocolError(f"unknown value type {tag} at byte {pos - 1}")
    return pos


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after) of the lib0 varUint at `pos`: 7 bits a byte, low first."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    at, value, shift = pos, byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if value > _MAX_VAR_UINT:
            raise ProtocolError(f"number at byte {at} is too large")
        if byte < 0x80:
            return value, pos + 1
        shift += 7


def _skip_uint(data: bytes, pos: int) -> int:
    return _uint(data, pos)[1]


def _skip_uints(data: bytes, pos: int, count: int) -> int:
    """Skip `count` varUints (at most 4), in C unless one is cut short or too large."""
    match = _VAR_UINTS[count](data, pos)
    if match is not None:
        return match.end()
    for _ in range(count):  # raises, saying which
        pos = _skip_uint(data, pos)
    return pos


def _skip_many_uints(data: bytes, pos: int, count: int) -> int:
    """Skip `count` varUints whose values do not matter, in C: a varUint ends at each byte below
    0x80, so the next `count` bytes hold as many ends as they have such bytes; the rest of the
    numbers start after them. Too-large numbers are then looked for in what was skipped."""
    start = pos
    while count:
        chunk = data[pos : pos + count]
        if len(chunk) < count:
            raise IndexError(pos + count)  # fewer bytes than numbers left
        count -= len(chunk.translate(None, _HIGH_BYTES))
        pos += len(chunk)
    if _TOO_LARGE(data, start, pos):
        raise ProtocolError(f"a number between bytes {start} and {pos} is too large")
    return pos


def _int(data: bytes, pos: int) -> int:
    """Skip a lib0 varInt: continue bit, sign bit and 6 bits, then 7 bits a byte."""
    first = data[pos]
    if first < 0x80:
        return pos + 1
    rest, after = _uint(data, pos + 1)
    if rest > _MAX_VAR_UINT >> 6:
        raise ProtocolError(f"integer at byte {pos} is too large")
    return after


def _skip(data: bytes, pos: int, length: int) -> int:
    if pos + length > len(data):
        raise ProtocolError(f"update ends {pos + length - len(data)} bytes short of a {length}-byte field at byte {pos}")
    return pos + length


def _string(data: bytes, pos: int) -> int:
    """Skip a string: a varUint length and that many bytes (see the module's note on UTF-8)."""
    length, pos = (data[pos], pos + 1) if data[pos] < 0x80 else _uint(data, pos)
    return _skip(data, pos, length)


def _json(data: bytes, pos: int, allow_undefined: bool = False) -> int:
    """Skip a string holding what `JSON.parse` accepts. Python's json also takes NaN and
    Infinity, refused here; numbers are not converted (only their syntax matters, and
    converting a 5,000-digit integer raises in Python where JavaScript accepts it)."""
    start, end = _uint(data, pos)[1], _string(data, pos)
    try:
        text = data[start:end].decode()
    except UnicodeDecodeError:
        raise ProtocolError(f"JSON at byte {start} is not UTF-8") from None
    if allow_undefined and text == "undefined":
        return end
    try:
        json.loads(text, parse_constant=_not_json, parse_int=len, parse_float=len)
    except (ValueError, RecursionError):
        raise ProtocolError(f"JSON at byte {start} does not parse") from None
    return end


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
