"""One bundle's data on a device: its event and feature tables over the host's database.

`App.open` makes one (`app.data`); workflow code reaches it through `ctx.events(name)` and
`ctx.features(name)`; the worker calls the methods below (see hosts/data_base.py).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from ..errors import DataError
from ..hosts.data_base import DataBackend
from .events import RELAY_BYTES, EventStore
from .features import FeatureStore
from .query import Query
from .schema import Declarations

__all__ = ["DeviceData", "EventQuery"]


class EventQuery(Query):
    """`ctx.events(name)`: a query over the table that can also add to it."""

    __slots__ = ("_data", "_name")

    def __init__(self, data: DeviceData, name: str) -> None:
        query = data.events.query(name)
        super().__init__(query._connect, query._level, query._label)
        self._data = data
        self._name = name

    async def add(self, rows: Any) -> list[str | None]:
        """Add one event (a dict) or a batch (a list): all or nothing; the ids (None for one a hook dropped)."""
        return await self._data.add_events(self._name, rows)


class DeviceData:
    """The event and feature tables a bundle declares, stored through `backend`."""

    def __init__(
        self, backend: DataBackend, bundle: str, declarations: Declarations,
        hooks: dict[str, Callable[..., Any]] | None = None, context: Callable[[], Any] | None = None,
    ) -> None:
        self.backend = backend
        self.declarations = declarations
        self.events = EventStore(backend.connect, bundle, declarations.events)
        self.features = FeatureStore(backend.connect, bundle, declarations.features)
        self._hooks = hooks or {}
        self._context = context or (lambda: None)

    def event_query(self, name: str) -> EventQuery:
        return EventQuery(self, name)

    def feature_query(self, name: str, *, stale_ok: bool = False) -> Query:
        return self.features.query(name, stale_ok=stale_ok)

    async def add_events(self, name: str, rows: Any) -> list[str | None]:
        """Check (and hook) every event, store them in one transaction, make them durable; their ids."""
        batch = _batch(name, rows)
        self.events.table(name)
        kept, slots = await self._run_hook(name, batch)
        ids = self.events.insert(name, self.events.prepare(name, kept)) if kept else []
        if kept:
            await _maybe_await(self.backend.durable())
        result: list[str | None] = [None] * len(batch)
        for slot, event_id in zip(slots, ids):
            result[slot] = event_id
        return result

    def relay_batch(self, limit: int = 500, max_bytes: int = RELAY_BYTES) -> dict[str, Any] | None:
        return self.events.relay_batch(limit, max_bytes)

    async def mark_relayed(self, upto: dict[str, int]) -> None:
        self.events.mark_relayed(upto)
        await _maybe_await(self.backend.durable())

    def feature_version(self, name: str) -> int | None:
        return self.features.version(name)

    async def apply_features(self, delta: Any) -> dict[str, int]:
        result = self.features.apply(delta)
        await _maybe_await(self.backend.durable())
        return result

    async def _run_hook(self, name: str, batch: list[Any]) -> tuple[list[Any], list[int]]:
        hook = self._hooks.get(name)
        if hook is None:
            return batch, list(range(len(batch)))
        ctx = self._context()
        kept, slots = [], []
        for index, event in enumerate(batch):
            if not isinstance(event, dict):
                raise DataError(
                    f"event table {name!r}, row {index}: an event must be an object of fields, got {type(event).__name__}"
                )
            try:
                out = await _maybe_await(hook(ctx, dict(event)))
            except DataError:
                raise
            except Exception as exc:
                raise DataError(
                    f"event table {name!r}, row {index}: refused by hook {hook.__name__}: {type(exc).__name__}: {exc}"
                ) from exc
            if out is not None:
                kept.append(out)
                slots.append(index)
        return kept, slots


def _batch(name: str, rows: Any) -> list[Any]:
    if isinstance(rows, (str, bytes)):
        try:
            rows = json.loads(rows)
        except ValueError as exc:
            raise DataError(f"event table {name!r}: events must be JSON objects: {exc}") from None
    if isinstance(rows, dict):
        return [rows]
    if isinstance(rows, (list, tuple)):
        return list(rows)
    raise DataError(
        f"event table {name!r}: add() takes an event (an object of fields) or a list of them, not {type(rows).__name__}"
    )


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
