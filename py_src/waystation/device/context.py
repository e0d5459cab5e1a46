"""What a workflow function receives as its first argument."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .hosts.state_base import StateBackend
from .log import workflow_logger
from .model import Model
from .state import StateDoc, open_state

if TYPE_CHECKING:
    from .data import DeviceData, EventQuery, Query

__all__ = ["Context", "Metrics"]


class Metrics:
    """Counters and timings recorded during one call; the caller gets them with the result."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def count(self, name: str, value: float = 1) -> None:
        self.values[name] = self.values.get(name, 0) + value

    def record(self, name: str, value: float) -> None:
        self.values[name] = value

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Record the wall time of a block in milliseconds under `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, (time.perf_counter() - start) * 1000)


class Context:
    """Gives a workflow function its bundle's models, its state, its events and features, a logger and metrics."""

    def __init__(
        self, models: Mapping[str, Model], bundle: str, files: Any, *, states: StateBackend | None = None,
        data: Callable[[], DeviceData] | None = None,
    ) -> None:
        self.models = models
        self.files = files
        self.log = workflow_logger(bundle)  # see waystation.device.log: stderr or the console, INFO by default
        self.metrics = Metrics()
        self._states = states  # None: the host's (hosts.default_state_backend), on first use
        self._data = data  # the bundle's DeviceData, made on first use (bundles without tables never open a database)
        self._bundle = bundle

    def events(self, name: str) -> EventQuery:
        """The event table `name` as a query (see waystation.device.data.query), which can also `await .add(event)`."""
        return self._device_data().event_query(name)

    def features(self, name: str, *, stale_ok: bool = False) -> Query:
        """The feature table `name` as a query; reading it past its max_age raises StaleFeaturesError unless `stale_ok`."""
        return self._device_data().feature_query(name, stale_ok=stale_ok)

    def _device_data(self) -> DeviceData:
        if self._data is None:
            raise DataError(f"bundle {self._bundle!r} runs without a data store here (open it with App.open)")
        return self._data()

    def state(self, name: str) -> StateDoc:
        """The CRDT document `name` (see waystation.device.state): `ctx.state("notes").list("notes")`.

        Documents belong to the runtime, not to the call or the bundle version: the next call,
        and the next version of the bundle, find what this one left.
        """
        return open_state(name, self._states)

    def __repr__(self) -> str:
        return f"Context(models={list(self.models)})"
