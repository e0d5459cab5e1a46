"""The browser state backend: Yjs documents, reached through Pyodide's JS interop.

The worker registers `makeStateHost(Y)` from web/state_host.js as the JS module
`_waystation_state`; this is the only Python module that touches it. Each call crosses once,
with strings and numbers only: values cross as JSON text, and writes are queued and cross as
one JSON array of operations, which the JS half applies in one Yjs transaction. The queue is
sent when a write is made outside a transaction, when a transaction ends, and before any read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import StateError
from .state_base import MISSING, RootKind

__all__ = ["BrowserStateBackend", "BrowserStateDoc"]


def _js() -> tuple[Any, Any, Any, Any]:
    import _waystation_state  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, create_proxy, to_js  # type: ignore[import-not-found]

    return _waystation_state, JsException, create_proxy, to_js


class BrowserStateBackend:
    """The Yjs documents of the worker's state host, by name."""

    name = "browser"

    def __init__(self) -> None:
        self._host = _js()[0]
        self._docs: dict[str, BrowserStateDoc] = {}

    def doc(self, name: str) -> BrowserStateDoc:
        if name not in self._docs:
            self._docs[name] = BrowserStateDoc(self._host, name)
        return self._docs[name]

    def names(self) -> list[str]:
        return list(self._host.names().to_py())  # those the page created too


class BrowserStateDoc:
    def __init__(self, host: Any, name: str) -> None:
        _, self._JsException, self._create_proxy, self._to_js = _js()
        self._host = host
        self._name = name
        self._queue: list[list[Any]] = []
        self._depth = 0
        self._kinds: dict[str, RootKind] = {}  # declared already: Yjs keeps a root's kind for good

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._host, method)(self._name, *args)
        except self._JsException as exc:
            raise StateError(f"state {self._name!r}: {exc.message}") from None

    def _read(self, method: str, *args: Any) -> Any:
        self._flush()
        return self._call(method, *args)

    def _write(self, *op: Any) -> None:
        self._queue.append(list(op))
        if not self._depth:
            self._flush()

    def _flush(self) -> None:
        if self._queue:
            ops, self._queue = self._queue, []
            self._call("run", json.dumps(ops, ensure_ascii=False, allow_nan=False))

    @property
    def client_id(self) -> int:
        return int(self._call("clientId"))

    def declare(self, root: str, kind: RootKind) -> None:
        if self._kinds.get(root) != kind:
            self._call("declare", root, kind)
            self._kinds[root] = kind

    # Reads.
    def map_get(self, root: str, key: str) -> Any:
        text = self._read("mapGet", root, key)
        return MISSING if text is None else json.loads(text)

    def map_has(self, root: str, key: str) -> bool:
        return bool(self._read("mapHas", root, key))

    def map_len(self, root: str) -> int:
        return int(self._read("mapSize", root))

    def map_json(self, root: str) -> dict[str, Any]:
        return json.loads(self._read("mapJSON", root))  # type: ignore[no-any-return]

    def list_len(self, root: str) -> int:
        return int(self._read("listLength", root))

    def list_slice(self, root: str, start: int, stop: int) -> list[Any]:
        return json.loads(self._read("listSlice", root, start, stop))  # type: ignore[no-any-return]

    def text_str(self, root: str) -> str:
        return str(self._read("textString", root))

    def text_len(self, root: str) -> int:
        return int(self._read("textLength", root))

    def counter_value(self, root: str) -> int:
        return int(self._read("counterValue", root))

    # Writes: queued, see the module's docstring.
    def map_set(self, root: str, key: str, value: Any) -> None:
        self._write("mapSet", root, key, value)

    def map_delete(self, root: str, key: str) -> None:
        self._write("mapDelete", root, key)

    def list_insert(self, root: str, index: int | None, values: list[Any]) -> None:
        last = self._queue[-1] if self._queue else None
        if index is None and last is not None and last[:3] == ["listInsert", root, None]:
            # One push, not many: Yjs walks a transaction's unmerged items on each push (quadratic).
            last[3].extend(values)
            return
        self._write("listInsert", root, index, values)

    def list_delete(self, root: str, index: int, length: int) -> None:
        self._write("listDelete", root, index, length)

    def text_insert(self, root: str, index: int, text: str) -> None:
        self._write("textInsert", root, index, text)

    def text_delete(self, root: str, index: int, length: int) -> None:
        self._write("textDelete", root, index, length)

    def counter_add(self, root: str, amount: int) -> None:
        self._write("counterAdd", root, amount)

    # The document.
    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._flush()

    def state_vector(self) -> bytes:
        return bytes(self._read("stateVector").to_bytes())

    def encode_state(self, since: bytes | None) -> bytes:
        vector = None if since is None else self._to_js(memoryview(since).cast("B"))
        return bytes(self._read("encodeState", vector).to_bytes())

    def apply_update(self, update: bytes) -> None:
        if self._depth:
            raise StateError("apply updates outside a transaction")
        self._read("applyUpdate", self._to_js(memoryview(update).cast("B")))

    def on_update(self, callback: Callable[[bytes], None]) -> Callable[[], None]:
        listener = self._create_proxy(lambda update: callback(update.to_bytes()))
        off = self._call("onUpdate", listener)

        def unsubscribe() -> None:
            nonlocal off
            if off is not None:
                off()
                listener.destroy()  # the proxy is ours: JS holds no other reference to it
                off = None

        return unsubscribe
