"""The one interface both state backends implement: named CRDT documents of JSON values.

`waystation.device.state` is the API workflow code sees; a backend does the CRDT work
underneath: Yjs through Pyodide in the browser (`state_browser`), pycrdt on CPython
(`state_native`). Their documents are wire-compatible: an update encoded by one applies to
the other.

What a backend is handed is already checked by the front end: values are JSON (`to_json`),
indices are non-negative (a backend clamps them to the length, as slicing does), text
indices count code points (Python `str` indices), whatever the CRDT counts underneath.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

__all__ = ["MISSING", "RootKind", "StateBackend", "StateDocBackend"]

RootKind = Literal["map", "list", "text"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What `map_get` returns for an absent key (a present key may hold JSON null: None)."""


class StateDocBackend(Protocol):
    """One document: root types by name, each a map, a list (Yjs Array) or a text.

    A counter is a map of per-client totals (keys: client ids in decimal); its value is
    their sum. Each replica writes only its own key, so concurrent increments never conflict.
    """

    @property
    def client_id(self) -> int: ...

    def declare(self, root: str, kind: RootKind) -> None:
        """Make `root` a `kind`; StateError if this document already has it as another kind."""

    # Reads.
    def map_get(self, root: str, key: str) -> Any: ...
    def map_has(self, root: str, key: str) -> bool: ...
    def map_len(self, root: str) -> int: ...
    def map_json(self, root: str) -> dict[str, Any]: ...
    def list_len(self, root: str) -> int: ...
    def list_slice(self, root: str, start: int, stop: int) -> list[Any]: ...
    def text_str(self, root: str) -> str: ...
    def text_len(self, root: str) -> int: ...
    def counter_value(self, root: str) -> int: ...

    # Writes. `index=None` in `list_insert` means the end.
    def map_set(self, root: str, key: str, value: Any) -> None: ...
    def map_delete(self, root: str, key: str) -> None: ...
    def list_insert(self, root: str, index: int | None, values: list[Any]) -> None: ...
    def list_delete(self, root: str, index: int, length: int) -> None: ...
    def text_insert(self, root: str, index: int, text: str) -> None: ...
    def text_delete(self, root: str, index: int, length: int) -> None: ...
    def counter_add(self, root: str, amount: int) -> None: ...

    # The document.
    def transaction(self) -> AbstractContextManager[None]: ...
    def state_vector(self) -> bytes: ...
    def encode_state(self, since: bytes | None) -> bytes: ...
    def apply_update(self, update: bytes) -> None: ...
    def on_update(self, callback: Callable[[bytes], None]) -> Callable[[], None]: ...


class StateBackend(Protocol):
    """The documents of one runtime, by name: asking twice for a name gives the same document."""

    name: str

    def doc(self, name: str) -> StateDocBackend: ...

    def names(self) -> list[str]: ...
