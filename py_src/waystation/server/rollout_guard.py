"""Automatic halts: a guarded rollout whose new version breaks its halt rules goes back by itself.

    guard = RolloutGuard(registry, store, executor)
    guard.reported({("digits", "1.0.1")})     # on the event loop, after a report was stored

A release published with `--halt-if "errors>1%,p95>1.5x,devices>=10"` is guarded
(registry.guarded_rollouts()). After each stored report that concerns a guarded rollout (its new
version, or the previous one it is compared with), the guard compares the two versions' numbers
over the reports received since the release was created (halt_rules.py) and, on a breach, calls
registry.halt(...) with the reason: the channel then serves the previous version again.

The checks run on `executor`, never on the event loop, and at most once per `interval` seconds
per rollout: a report during a check, or within `interval` of one, schedules one more check at
the end of that interval, so the last report of a burst is always looked at. The list of guarded
rollouts is read at most once per `interval` too, so an ingest at full speed costs the registry
nothing per report. A report about a version that list does not guard may concern a rollout made
since it was read: those versions are looked at once more with a list read after them (one read
per `interval` at most, whatever the number of reports).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, TypeVar

from ..device.errors import BundleError
from .halt_rules import parse_halt_rules
from .registry import Registry
from .telemetry_store import TelemetryStore

__all__ = ["RolloutGuard"]

_log = logging.getLogger("waystation.server.rollouts")
T = TypeVar("T")
_Key = tuple[str, str, str]  # bundle, channel, version


class RolloutGuard:
    def __init__(self, registry: Registry, store: TelemetryStore, executor: Executor, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.store, self.executor = registry, store, executor
        self.interval, self._clock = interval, clock
        self._rollouts: list[dict[str, Any]] = []
        self._read_at: float | None = None
        self._reading: asyncio.Future[list[dict[str, Any]]] | None = None
        self._pending: set[_Key] = set()
        self._checked_at: dict[_Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # held so that none is collected mid-way
        self._unseen: set[tuple[str, str]] = set()  # reported versions no rollout in the list guarded, for a second look

    def reported(self, versions: Iterable[tuple[str, str]]) -> None:
        """Schedule the checks a stored report about these (bundle, version) pairs calls for; returns at once."""
        self._spawn(self._after_report(set(versions)))

    async def _after_report(self, versions: set[tuple[str, str]], *, second_look: bool = True) -> None:
        rollouts = await self._guarded()
        covered = {(r["bundle"], v) for r in rollouts for v in (r["version"], r["previous"])}
        if second_look and versions - covered:
            # The list may predate a rollout these reports concern (published within the last interval).
            if not self._unseen:
                asyncio.get_running_loop().call_later(self.interval, self._look_again)
            self._unseen |= versions - covered
        for rollout in rollouts:
            key = (rollout["bundle"], rollout["channel"], rollout["version"])
            concerned = {(rollout["bundle"], rollout["version"]), (rollout["bundle"], rollout["previous"])}
            if key in self._pending or not concerned & versions:
                continue
            self._pending.add(key)
            last = self._checked_at.get(key)
            wait = 0.0 if last is None else max(0.0, last + self.interval - self._clock())
            asyncio.get_running_loop().call_later(wait, self._spawn, self._check(key, rollout))

    def _look_again(self) -> None:
        """The unseen versions against a list read from now on: a rollout made since the last read is in it."""
        versions, self._unseen = self._unseen, set()
        self._read_at = None
        self._spawn(self._after_report(versions, second_look=False))

    async def _guarded(self) -> list[dict[str, Any]]:
        """registry.guarded_rollouts(), read again once `interval` has passed (one read for concurrent callers)."""
        fresh = self._read_at is not None and self._clock() - self._read_at < self.interval
        if fresh:
            return self._rollouts
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._off_loop(self.registry.guarded_rollouts))
            try:
                self._rollouts = await self._reading
                self._read_at = self._clock()
            except Exception:
                _log.exception("reading the guarded rollouts failed")
            finally:
                self._reading = None
            return self._rollouts
        try:
            return await asyncio.shield(self._reading)
        except Exception:
            return self._rollouts

    async def _check(self, key: _Key, rollout: dict[str, Any]) -> None:
        # Cleared before the numbers are read: a report stored from now on schedules the next check.
        self._pending.discard(key)
        self._checked_at[key] = self._clock()
        try:
            halted = await self._off_loop(lambda: self.check(rollout))
        except Exception:
            _log.exception("checking the halt rules of %s %s on %s failed", key[0], key[2], key[1])
            return
        if halted:
            self._read_at = None  # the rollout is over: read the list again at the next report

    def check(self, rollout: dict[str, Any]) -> str | None:
        """Compare the rollout's version with the previous one and halt it if a rule breaks; the reason, or None.

        Blocking (SQLite): runs on the executor."""
        bundle, channel, version = rollout["bundle"], rollout["channel"], rollout["version"]
        try:
            rules = parse_halt_rules(rollout["halt_if"])
        except ValueError as exc:
            _log.error("%s %s on %s: its halt rules are unreadable, nothing is checked: %s", bundle, version, channel, exc)
            return None
        since = self._started(bundle, channel, version)
        if since is None:
            return None  # withdrawn meanwhile
        reason = rules.check(self.store.version_stats(bundle, version, since),
                             self.store.version_stats(bundle, rollout["previous"], since))
        if reason is None:
            return None
        try:
            halted, back_to = self.registry.halt(bundle, channel, version, reason)
        except BundleError as exc:  # rolled back or halted by someone else since the list was read
            _log.info("%s %s on %s was not halted: %s", bundle, version, channel, exc)
            return None
        _log.warning("%s: %s; devices go back to %s", halted, reason, back_to.version)
        return reason

    def _started(self, bundle: str, channel: str, version: str) -> int | None:
        """When the release of `version` in force on `channel` was created, in ms since the epoch."""
        for release in self.registry.history(bundle):
            if release["channel"] == channel and release["version"] == version and release["rolled_back_at"] is None:
                return int(datetime.fromisoformat(release["created_at"]).timestamp() * 1000)
        return None

    async def _off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
