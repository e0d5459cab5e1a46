"""User state as CRDT documents: maps, lists, counters and texts of JSON values.

A workflow function gets a document by name from its context; the same code runs over
Yjs in the browser and over pycrdt on CPython, and the two sync with each other:

    @export
    async def add_note(ctx, text: str, tags: list[str]) -> int:
        notes = ctx.state("notes")
        with notes.transaction():  # one update, seen by observers and peers at once
            notes.list("notes").append({"text": text, "tags": tags})
            notes.counter("added").increment()
        return notes.counter("added").value

Values are copied in and out as JSON (None, bool, int, float, str, list, dict with str keys):
change a nested value by setting it again. Numbers are JSON numbers on both hosts: integers
within +-(2**53 - 1), and a float with an integral value reads back as an int, as JavaScript
reads it. Text indices count code points, as `str` does.

A document's name is also its sync room's name (`/api/sync/ws/USER/NAME`): letters, digits
and `_.:-`, at most 128 characters.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Callable, Iterable, Iterator, MutableMapping, MutableSequence
from contextlib import AbstractContextManager
from typing import Any, overload

from .hosts import default_state_backend
from .hosts.state_base import MISSING, StateBackend, StateDocBackend

__all__ = ["StateCounter", "StateDoc", "StateList", "StateMap", "StateText", "open_state", "to_json"]

DOC_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # a sync room's DOC part (server/sync/endpoint.py)
_SAFE_INT = 2**53 - 1
_END = 2**31 - 1  # past the end of any list or text (backends clamp), and a number, not a BigInt, in JS


def open_state(name: str, backend: StateBackend | None = None) -> StateDoc:
    """The document `name` of `backend` (the host's, by default): what `ctx.state(name)` gives."""
    if not isinstance(name, str) or not DOC_NAME.fullmatch(name):
        raise ValueError(f"state name {name!r}: use 1-128 letters, digits and _.:- (it names a sync room)")
    backend = backend or default_state_backend()
    return StateDoc(name, backend.doc(name))


class StateDoc:
    """A named document; its roots are maps, lists, texts and counters, each by name.

    >>> doc = open_state("example")
    >>> doc.map("settings")["theme"] = "dark"
    >>> other = open_state("example-copy")
    >>> other.apply_update(doc.encode_state())
    >>> other.map("settings")["theme"]
    'dark'
    """

    def __init__(self, name: str, backend: StateDocBackend) -> None:
        self.name = name
        self._backend = backend

    def map(self, name: str) -> StateMap:
        self._backend.declare(_root(name), "map")
        return StateMap(self._backend, name)

    def list(self, name: str) -> StateList:
        self._backend.declare(_root(name), "list")
        return StateList(self._backend, name)

    def text(self, name: str) -> StateText:
        self._backend.declare(_root(name), "text")
        return StateText(self._backend, name)

    def counter(self, name: str) -> StateCounter:
        self._backend.declare(_root(name), "map")  # of per-client totals: see StateCounter
        return StateCounter(self._backend, name)

    def transaction(self) -> AbstractContextManager[None]:
        """Group changes into one update (nested transactions join the outer one).

        In the browser, changes are queued and sent to Yjs in one batch when the block ends or
        when it reads from the document; a block that reads between its writes makes more
        than one update (still applied in order).
        """
        return self._backend.transaction()

    @property
    def client_id(self) -> int:
        return self._backend.client_id

    def state_vector(self) -> bytes:
        """What this replica has seen, for a peer's `encode_state(since=...)` (sync step 1)."""
        return self._backend.state_vector()

    def encode_state(self, since: bytes | None = None) -> bytes:
        """The whole document as one update, or only what a peer at state vector `since` lacks."""
        return self._backend.encode_state(since)

    def apply_update(self, update: bytes) -> None:
        """Merge an update from a peer (Yjs or pycrdt, v1 encoding); StateError if it does not decode."""
        self._backend.apply_update(bytes(update))

    def on_update(self, callback: Callable[[bytes], None]) -> Callable[[], None]:
        """Call `callback(update)` after each change, local or applied; returns the unsubscribe function."""
        return self._backend.on_update(callback)

    def __repr__(self) -> str:
        return f"StateDoc({self.name!r})"


class _Root:
    def __init__(self, backend: StateDocBackend, name: str) -> None:
        self._backend = backend
        self._name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"


class StateMap(_Root, MutableMapping[str, Any]):
    """A map from str to JSON values; `keys()`, `values()` and `items()` are snapshots."""

    def __getitem__(self, key: str) -> Any:
        value = self._backend.map_get(self._name, _key(key))
        if value is MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._backend.map_get(self._name, _key(key))
        return default if value is MISSING else value

    def __setitem__(self, key: str, value: Any) -> None:
        self._backend.map_set(self._name, _key(key), to_json(value))

    set = __setitem__

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._backend.map_delete(self._name, key)

    def delete(self, key: str) -> None:
        """Remove `key` if present (no KeyError, and no read: it joins a transaction's batch)."""
        self._backend.map_delete(self._name, _key(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._backend.map_has(self._name, key)

    def __len__(self) -> int:
        return self._backend.map_len(self._name)

    def __iter__(self) -> Iterator[str]:
        return iter(builtins.list(self.to_dict()))

    def keys(self) -> Any:
        return self.to_dict().keys()

    def values(self) -> Any:
        return self.to_dict().values()

    def items(self) -> Any:
        return self.to_dict().items()

    def update(self, other: Any = (), /, **more: Any) -> None:
        with self._backend.transaction():
            for key, value in dict(other, **more).items():
                self[key] = value

    def clear(self) -> None:
        with self._backend.transaction():
            for key in self.to_dict():
                self._backend.map_delete(self._name, key)

    def to_dict(self) -> dict[str, Any]:
        return self._backend.map_json(self._name)


class StateList(_Root, MutableSequence[Any]):
    """A list of JSON values (a Yjs Array); iterating reads it once, as a snapshot."""

    def __len__(self) -> int:
        return self._backend.list_len(self._name)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> builtins.list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._slice(index)
        i = _index(index)
        if i < 0:  # a read of the length first
            i = self._position(i)
        found = self._backend.list_slice(self._name, i, i + 1)
        if not found:
            raise IndexError("state list index out of range")
        return found[0]

    def _slice(self, s: slice) -> builtins.list[Any]:
        start, stop = _index(s.start or 0), _END if s.stop is None else _index(s.stop)
        if s.step in (None, 1) and start >= 0 and stop >= 0:  # one read, no length needed
            return self._backend.list_slice(self._name, start, max(start, stop))
        return self.to_list()[s]

    @overload
    def __setitem__(self, index: int, value: Any) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[Any]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("state lists take slice assignment with step 1 only")
            replaced: builtins.list[Any] = [to_json(v) for v in value]
            span = max(stop - start, 0)
        else:
            start, span, replaced = self._position(index), 1, [to_json(value)]
        with self._backend.transaction():
            self._backend.list_delete(self._name, start, span)
            self._backend.list_insert(self._name, start, replaced)

    @overload
    def __delitem__(self, index: int) -> None: ...
    @overload
    def __delitem__(self, index: slice) -> None: ...
    def __delitem__(self, index: int | slice) -> None:
        if isinstance(index, int):
            self._backend.list_delete(self._name, self._position(index), 1)
            return
        start, stop, step = index.indices(len(self))
        if step == 1:
            self._backend.list_delete(self._name, start, max(stop - start, 0))
            return
        with self._backend.transaction():
            for i in sorted(range(start, stop, step), reverse=True):
                self._backend.list_delete(self._name, i, 1)

    def insert(self, index: int, value: Any) -> None:
        """Insert before `index`, as `list.insert` does (clamped, negative from the end)."""
        self._backend.list_insert(self._name, self._clamped(index), [to_json(value)])

    def append(self, value: Any) -> None:
        self._backend.list_insert(self._name, None, [to_json(value)])

    def extend(self, values: Iterable[Any]) -> None:
        self._backend.list_insert(self._name, None, [to_json(v) for v in values])

    def delete(self, index: int, length: int = 1) -> None:
        """Delete `length` items from `index` on, clamped as `del items[index:index + length]` is."""
        self._backend.list_delete(self._name, self._clamped(index), max(_index(length), 0))

    def clear(self) -> None:
        self._backend.list_delete(self._name, 0, _END)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_list())

    def __contains__(self, value: object) -> bool:
        return value in self.to_list()

    def index(self, value: Any, start: int = 0, stop: int = _END) -> int:
        return self.to_list().index(value, start, stop)

    def count(self, value: Any) -> int:
        return self.to_list().count(value)

    def to_list(self) -> builtins.list[Any]:
        return self._backend.list_slice(self._name, 0, _END)

    def _position(self, index: int) -> int:
        """`index` as a position in range, or IndexError (a read: the length)."""
        length = len(self)
        i = _index(index) + (length if index < 0 else 0)
        if not 0 <= i < length:
            raise IndexError("state list index out of range")
        return i

    def _clamped(self, index: int) -> int:
        index = _index(index)
        return index if index >= 0 else max(len(self) + index, 0)


class StateText(_Root):
    """A collaborative text; indices count code points. `str(text)` reads it."""

    def insert(self, index: int, text: str) -> None:
        """Insert before `index`, clamped as `list.insert` does (negative counts from the end)."""
        self._backend.text_insert(self._name, self._clamped(index), _string(text))

    def append(self, text: str) -> None:
        self._backend.text_insert(self._name, _END, _string(text))

    def __iadd__(self, text: str) -> StateText:
        self.append(text)
        return self

    def delete(self, index: int, length: int = 1) -> None:
        """Delete `length` code points from `index` on, clamped as slicing is."""
        self._backend.text_delete(self._name, self._clamped(index), max(_index(length), 0))

    def __str__(self) -> str:
        return self._backend.text_str(self._name)

    def __len__(self) -> int:
        return self._backend.text_len(self._name)

    def _clamped(self, index: int) -> int:
        index = _index(index)
        return index if index >= 0 else max(len(self) + index, 0)


class StateCounter(_Root):
    """A counter that concurrent replicas can change without losing increments.

    Yjs has no counter type, so it is a map of per-client totals, summed: each replica
    writes only the key of its own client id, and its writes are ordered. A browser tab
    gets a new client id each time it opens the document, and so adds a key.
    """

    def increment(self, amount: int = 1) -> None:
        self._backend.counter_add(self._name, _amount(amount))

    def decrement(self, amount: int = 1) -> None:
        self._backend.counter_add(self._name, -_amount(amount))

    @property
    def value(self) -> int:
        return self._backend.counter_value(self._name)

    def __int__(self) -> int:
        return self.value


def to_json(value: Any) -> Any:
    """`value` as the JSON value a state document stores (a checked copy; tuples become lists).

    TypeError for what JSON cannot hold; ValueError for NaN, infinities, integers beyond
    +-(2**53 - 1) (Yjs stores numbers as doubles) and strings that are not valid Unicode.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a JSON number")
        return float(value)
    if isinstance(value, (builtins.list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {_key(k): to_json(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not a JSON value: use None, bool, int, float, str, list or dict")


def _int(value: int) -> int:
    if not -_SAFE_INT <= value <= _SAFE_INT:
        raise ValueError(f"{value} is beyond +-(2**53 - 1): Yjs would not keep it exactly")
    return int(value)


def _string(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value[:40]!r} has lone surrogates: not valid Unicode") from None
    return str(value)


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"state map keys are str, not {type(key).__name__}")
    return _string(key)


def _root(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"root name {name!r}: use a non-empty str")
    return _string(name)


def _index(index: Any) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"indices are int, not {type(index).__name__}")
    return max(-_END, min(int(index), _END))


def _amount(amount: Any) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"counters count in int, not {type(amount).__name__}")
    return _int(amount)
