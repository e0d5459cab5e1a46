"""The native state backend: pycrdt documents on CPython (and the test host of `state`).

Kept in memory for the life of the process, or, given a data folder (`waystation run --data
DIR`), persisted there as the browser keeps them in IndexedDB: each document's updates are
appended to `DIR/state.sqlite3` as they happen (committed before the write returns), and a
document is loaded from one merge of its rows when first asked for, so the next process sees
what this one wrote. The same CRDT semantics as everywhere else: two processes writing one
document at once both keep their edits, merged when either opens it next. With `waystation run
--server`, `state_sync` syncs these documents with an account's on a server: `on_open` lets it
bring a document up to date before anyone reads it, and `rows_held` tells it which stored rows a
sync of the copy in memory sends.

Two things pycrdt 0.14.13 does its own way, made to match Yjs here:
- numbers come back as floats (it stores every number as a double, as Yjs does); a float
  with an integral value is read as the int JavaScript's JSON would give;
- text indices are UTF-8 byte offsets (an offset inside a character lands elsewhere);
  Waystation's are code points, converted here.
And one bug worked around: applied one at a time out of causal order, updates can end
wrong (tests/unit/test_sync_convergence.py), while one merged update applied to a new
document comes out right. So while a document holds updates it cannot integrate yet, it
is rebuilt from one merge on each update, as the sync server's rooms do.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, Text, TransactionEvent, get_update, merge_updates

from ..errors import StateError
from .state_base import MISSING, RootKind

__all__ = ["NativeStateBackend", "NativeStateDoc", "STATE_FILE"]

_TYPES: dict[RootKind, type[Any]] = {"map": Map, "list": Array, "text": Text}
_EMPTY_UPDATE = b"\x00\x00"
STATE_FILE = "state.sqlite3"
_COMPACT_AFTER = 500  # rows of one document squashed into one when it is loaded (y-indexeddb: 500)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_doc ON updates (doc, id);
"""


class NativeStateBackend:
    """pycrdt documents by name, kept for the life of the process, and in `folder` if given."""

    name = "native"

    def __init__(self, folder: str | Path | None = None) -> None:
        self._docs: dict[str, NativeStateDoc] = {}
        self._store = None if folder is None else _UpdateLog(Path(folder) / STATE_FILE)
        self._rows: dict[str, set[int]] = {}  # per document, the stored rows its copy in memory holds
        # Called once for each document, loaded and before anyone reads it (`state_sync` brings it up to date).
        self.on_open: Callable[[str, NativeStateDoc], None] | None = None

    @property
    def path(self) -> Path | None:
        """The SQLite file the documents are kept in, or None if they live in memory only."""
        return None if self._store is None else self._store.path

    def doc(self, name: str) -> NativeStateDoc:
        if name not in self._docs:
            doc = NativeStateDoc()
            if self._store is not None:
                rows = self._rows[name] = set()
                stored = self._store.load(name, rows)
                if stored is not None:
                    doc.apply_update(stored)
                store = self._store
                doc.on_update(lambda update: rows.add(store.append(name, update)))
            self._docs[name] = doc
            if self.on_open is not None:
                self.on_open(name, doc)
        return self._docs[name]

    def rows_held(self, name: str) -> frozenset[int]:
        """The ids of the stored rows of document `name` that its copy in this process holds
        (loaded, or written by it): what a sync of that copy sends."""
        return frozenset(self._rows.get(name, ()))

    def names(self) -> list[str]:
        stored = self._store.names() if self._store is not None else []
        return sorted({*self._docs, *stored})

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class _UpdateLog:
    """Documents' updates in one SQLite file, appended as they happen, merged when loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # WAL: another `waystation run` may read while this one writes; FULL: a write that
            # returned survives a crash, as an edit the page made survives in IndexedDB.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def load(self, doc: str, ids: set[int]) -> bytes | None:
        """The document as one update (its rows merged: pycrdt applies one merge right, see above),
        or None; the ids of the rows it holds are added to `ids`."""
        db = self._connect()
        rows = db.execute("SELECT id, data FROM updates WHERE doc = ? ORDER BY id", (doc,)).fetchall()
        ids.update(row[0] for row in rows)
        if not rows:
            return None
        try:
            merged = bytes(merge_updates(*(bytes(data) for _, data in rows))) if len(rows) > 1 else bytes(rows[0][1])
        except ValueError as exc:
            raise StateError(f"{self.path}: the stored updates of document {doc!r} do not decode: {exc}") from exc
        if len(rows) > _COMPACT_AFTER:
            with _transaction(db):  # only the rows merged: another process may have appended since
                db.execute("DELETE FROM updates WHERE doc = ? AND id <= ?", (doc, rows[-1][0]))
                ids.add(_row_id(db.execute("INSERT INTO updates (doc, data) VALUES (?, ?)", (doc, merged))))
        return merged

    def append(self, doc: str, update: bytes) -> int:
        """Store one update of `doc`; its row id."""
        return _row_id(self._connect().execute("INSERT INTO updates (doc, data) VALUES (?, ?)", (doc, update)))

    def names(self) -> list[str]:
        return [row[0] for row in self._connect().execute("SELECT DISTINCT doc FROM updates")]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _row_id(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None  # an INSERT into a rowid table
    return cursor.lastrowid


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class NativeStateDoc:
    def __init__(self) -> None:
        self._doc: Doc[Any] = Doc()
        self._kinds: dict[str, RootKind] = {}
        self._roots: dict[str, Any] = {}
        self._pending: list[bytes] = []  # updates applied that the document holds but cannot integrate yet
        self._callbacks: dict[int, Callable[[bytes], None]] = {}
        self._ids = itertools.count()
        self._subscription: Any = None
        self._depth = 0

    @property
    def client_id(self) -> int:
        return int(self._doc.client_id)

    def declare(self, root: str, kind: RootKind) -> None:
        known = self._kinds.setdefault(root, kind)
        if known != kind:
            raise StateError(f"root {root!r} of this document is a {known}, not a {kind}")

    def _root(self, root: str, kind: RootKind) -> Any:
        self.declare(root, kind)
        shared = self._roots.get(root)
        if shared is None:
            shared = self._roots[root] = self._doc.get(root, type=_TYPES[kind])
        return shared

    # Maps.
    def map_get(self, root: str, key: str) -> Any:
        shared = self._root(root, "map")
        return _plain(shared[key]) if key in shared else MISSING

    def map_has(self, root: str, key: str) -> bool:
        return key in self._root(root, "map")

    def map_len(self, root: str) -> int:
        return len(self._root(root, "map"))

    def map_json(self, root: str) -> dict[str, Any]:
        return _plain(self._root(root, "map").to_py() or {})  # type: ignore[no-any-return]

    def map_set(self, root: str, key: str, value: Any) -> None:
        self._root(root, "map")[key] = value

    def map_delete(self, root: str, key: str) -> None:
        shared = self._root(root, "map")
        if key in shared:
            del shared[key]

    # Lists.
    def list_len(self, root: str) -> int:
        return len(self._root(root, "list"))

    def list_slice(self, root: str, start: int, stop: int) -> list[Any]:
        shared = self._root(root, "list")
        n = len(shared)
        start, stop = min(start, n), min(stop, n)
        return _plain(shared[start:stop]) if start < stop else []

    def list_insert(self, root: str, index: int | None, values: list[Any]) -> None:
        shared = self._root(root, "list")
        if index is None or index >= len(shared):
            shared.extend(values)
        else:
            shared[index:index] = values

    def list_delete(self, root: str, index: int, length: int) -> None:
        shared = self._root(root, "list")
        n = len(shared)
        start, stop = min(index, n), min(index + length, n)
        if start < stop:
            del shared[start:stop]

    # Texts: pycrdt counts UTF-8 bytes.
    def text_str(self, root: str) -> str:
        return str(self._root(root, "text"))

    def text_len(self, root: str) -> int:
        return len(self.text_str(root))

    def text_insert(self, root: str, index: int, text: str) -> None:
        shared = self._root(root, "text")
        shared.insert(_utf8_offset(str(shared), index), text)

    def text_delete(self, root: str, index: int, length: int) -> None:
        shared = self._root(root, "text")
        current = str(shared)
        start, stop = _utf8_offset(current, index), _utf8_offset(current, index + length)
        if start < stop:
            del shared[start:stop]

    # Counters: a map of per-client totals.
    def counter_add(self, root: str, amount: int) -> None:
        shared = self._root(root, "map")
        key = str(self.client_id)
        shared[key] = _count(shared.get(key, 0)) + amount

    def counter_value(self, root: str) -> int:
        return sum(_count(v) for v in self._root(root, "map").values())

    # The document.
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._doc.transaction():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def state_vector(self) -> bytes:
        return bytes(self._doc.get_state())

    def encode_state(self, since: bytes | None) -> bytes:
        """Everything, pending updates included (as Yjs's encodeStateAsUpdate does)."""
        try:
            if not self._pending:
                return bytes(self._doc.get_update(since) if since is not None else self._doc.get_update())
            merged = merge_updates(self._doc.get_update(), *self._pending)
            return bytes(get_update(merged, since) if since is not None else merged)
        except ValueError as exc:
            raise StateError(f"not a state vector: {exc}") from exc

    def apply_update(self, update: bytes) -> None:
        if self._depth:
            raise StateError("apply updates outside a transaction")
        try:
            if self._pending:
                self._rebuild(merge_updates(self._doc.get_update(), *self._pending, update))
            else:
                self._doc.apply_update(update)
                if _holds_pending(update, self._doc.get_state()):
                    self._pending = [update]
        except ValueError as exc:  # it did not decode: nothing was applied
            raise StateError(f"update does not decode: {exc}") from exc

    def _rebuild(self, merged: bytes) -> None:
        doc: Doc[Any] = Doc(client_id=self._doc.client_id)
        self._unobserve()
        self._doc, self._roots = doc, {}
        self._observe()  # observers get the rebuild as one (large) update
        doc.apply_update(merged)
        self._pending = [merged] if _holds_pending(merged, doc.get_state()) else []

    def on_update(self, callback: Callable[[bytes], None]) -> Callable[[], None]:
        key = next(self._ids)
        self._callbacks[key] = callback
        self._observe()

        def unsubscribe() -> None:
            self._callbacks.pop(key, None)
            if not self._callbacks:
                self._unobserve()

        return unsubscribe

    def _observe(self) -> None:
        if self._callbacks and self._subscription is None:
            self._subscription = self._doc.observe(self._changed)

    def _unobserve(self) -> None:
        if self._subscription is not None:
            self._doc.unobserve(self._subscription)
            self._subscription = None

    def _changed(self, event: TransactionEvent) -> None:
        update = bytes(event.update)
        if update != _EMPTY_UPDATE:
            for callback in list(self._callbacks.values()):
                callback(update)


def _plain(value: Any) -> Any:
    """A value read from pycrdt as JSON reads it in JavaScript: integral floats are ints."""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "to_py"):  # a nested shared type, put there by another client
        return _plain(value.to_py())
    return value


def _number(x: float) -> int | float:
    if not x.is_integer() or abs(x) >= 1e21:  # JSON.stringify writes these with an exponent
        return x
    # Beyond 2**53 JavaScript writes the shortest digits that round-trip, then zeros.
    return int(x) if abs(x) < 2**53 else int(Decimal(repr(x)))


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _utf8_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of code point `index` of `text`, clamped to its end."""
    if text.isascii():
        return min(index, len(text))
    return len(text[:index].encode("utf-8"))


def _holds_pending(update: bytes, state: bytes) -> bool:
    """True if `update` has items or deletions that a document at `state` (its state vector,
    after applying `update`) could not integrate. The same check as the sync server's
    `server/sync/compaction.holds_pending`, which device code cannot import."""
    beyond = get_update(update, state)
    covered = _state_vector(state)
    numbers = _var_uints(beyond)
    try:
        if next(numbers) != 0:  # groups of items the state does not cover
            return True
        for _ in range(next(numbers)):  # the delete set: per client, ranges (clock, length)
            client = next(numbers)
            for _ in range(next(numbers)):
                clock, length = next(numbers), next(numbers)
                if clock + length > covered.get(client, 0):
                    return True
    except StopIteration:
        return True  # an encoding this does not read: assume the worst
    return False


def _state_vector(state: bytes) -> dict[int, int]:
    numbers = _var_uints(state)
    return {next(numbers): next(numbers) for _ in range(next(numbers, 0))}


def _var_uints(data: bytes) -> Iterator[int]:
    """lib0's varUint encoding: 7 bits a byte, low bits first, high bit set on all but the last."""
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            yield value
            value = shift = 0
