"""Progress of long work over bytes: a bar factory the command line fills in with tqdm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Bar", "BarFactory", "no_bar"]


class Bar(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


BarFactory = Callable[[int, str], Bar]  # (total bytes, what is being done) -> bar


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def no_bar(total: int, desc: str) -> Bar:
    return _NoBar()
