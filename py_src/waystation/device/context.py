"""What a workflow function receives as its first argument."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .model import Model

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
    """Gives a workflow function its bundle's models, a logger and metrics."""

    def __init__(self, models: Mapping[str, Model], bundle: str, files: Any) -> None:
        self.models = models
        self.files = files
        self.log = logging.getLogger(f"waystation.workflow.{bundle}")
        self.metrics = Metrics()

    def __repr__(self) -> str:
        return f"Context(models={list(self.models)})"
