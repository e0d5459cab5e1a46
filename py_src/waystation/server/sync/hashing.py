"""Password hashing on threads of its own, with a bounded queue.

scrypt takes tens of milliseconds of CPU and 16 MiB per hash. Run in Starlette's shared
thread pool, a burst of logins filled it, and every WebSocket token check (a sub-millisecond
SQLite lookup in the same pool) waited behind them: seconds to open a socket. Here hashing
has `workers` threads apart from that pool, at most `queue` calls wait for them, and past
that a caller is told the server is busy (503) instead of waiting without end.

    hasher = PasswordHasher(workers=1, queue=32)
    token = await hasher.run(accounts.login, user, password)   # RetryLater(503) when full
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import RetryLater

__all__ = ["PasswordHasher"]

T = TypeVar("T")


class PasswordHasher:
    """Runs blocking calls that hash passwords on `workers` threads; `queue` more may wait."""

    def __init__(self, *, workers: int, queue: int) -> None:
        self.workers = max(1, workers)
        self.limit = self.workers + queue
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="password-hash")
        self._pending = 0
        self._seconds = 0.05  # a running mean of one call's time: the Retry-After estimate

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on a hashing thread; raises RetryLater(503) when `limit` calls are pending."""
        if self._pending >= self.limit:
            wait = max(1.0, self._pending * self._seconds / self.workers)
            raise RetryLater(503, f"the server is busy checking passwords ({self._pending} waiting): try again in "
                                  f"{math.ceil(wait)} s", wait)
        self._pending += 1
        try:
            return await asyncio.wrap_future(self._executor.submit(self._timed, call, *args))
        finally:
            self._pending -= 1

    def _timed(self, call: Callable[..., T], *args: object) -> T:
        started = time.monotonic()
        try:
            return call(*args)
        finally:
            self._seconds = 0.9 * self._seconds + 0.1 * (time.monotonic() - started)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
