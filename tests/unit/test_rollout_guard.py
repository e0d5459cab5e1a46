"""RolloutGuard on a real registry and store: checks at most once a second per rollout, never missing
the last report of a burst, and only for reports about a guarded rollout's versions."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.server.registry import Registry
from waystation.server.rollout_guard import RolloutGuard
from waystation.server.telemetry_store import TelemetryStore

from telemetry_reports import report, telemetry_bundle


class CountingGuard(RolloutGuard):
    """The guard, noting when each check starts (what the test measures)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks: list[float] = []

    def check(self, rollout: dict[str, Any]) -> str | None:
        self.checks.append(time.monotonic())
        return super().check(rollout)


def setup(tmp_path: Path) -> tuple[Registry, TelemetryStore]:
    data, key = tmp_path / "data", Ed25519PrivateKey.generate()
    registry = Registry(data)
    registry.add_version(telemetry_bundle(tmp_path, key, "guarded", "1.0.0"))
    registry.add_version(telemetry_bundle(tmp_path, key, "guarded", "1.0.1", "1.0.0"))
    registry.release("guarded", "1.0.0", "stable")
    registry.release("guarded", "1.0.1", "stable", 20, halt_if="errors>50%,devices>=3")
    return registry, TelemetryStore(data)


def test_a_burst_of_reports_is_checked_once_a_second_and_its_last_report_is_seen(tmp_path: Path) -> None:
    registry, store = setup(tmp_path)
    guard = CountingGuard(registry, store, ThreadPoolExecutor(1))

    async def burst() -> float:
        for i in range(50):  # 2.5 s of reports, one every 50 ms; only the last ones fail
            failing = i >= 45
            store.ingest(report("guarded", "1.0.1", functions={"f": ([1.0] * 4, {"e": 4} if failing else {})}))
            guard.reported({("guarded", "1.0.1")})
            await asyncio.sleep(0.05)
        last = time.monotonic()
        await asyncio.sleep(1.5)  # the trailing check
        return last

    last = asyncio.run(burst())
    gaps = [b - a for a, b in zip(guard.checks, guard.checks[1:])]
    assert 2 <= len(guard.checks) <= 5, guard.checks
    assert all(gap >= 0.8 for gap in gaps), gaps  # 1 s apart when scheduled; the executor's start jitters
    assert guard.checks[-1] >= last - 0.05  # a check after the burst's last report...
    # ...which found 5 of 50 reports' calls failing: 10% is not above 50%, nothing halted.
    assert registry.history("guarded")[0]["halted_at"] is None


def test_the_last_report_of_a_burst_can_halt(tmp_path: Path) -> None:
    registry, store = setup(tmp_path)
    guard = CountingGuard(registry, store, ThreadPoolExecutor(1))

    async def burst() -> None:
        for _ in range(3):  # three installations, every call failing, within one second
            store.ingest(report("guarded", "1.0.1", functions={"f": ([1.0] * 4, {"e": 4})}))
            guard.reported({("guarded", "1.0.1")})
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.5)

    asyncio.run(burst())
    halted = registry.history("guarded")[0]
    assert halted["version"] == "1.0.1" and halted["halt_reason"] == "halted: error rate 100.0% > 50% over 3 devices"
    # The first report's check, then (unless that one already saw all three) one for the other two.
    assert 1 <= len(guard.checks) <= 2


def test_reports_about_other_versions_check_nothing(tmp_path: Path) -> None:
    registry, store = setup(tmp_path)
    guard = CountingGuard(registry, store, ThreadPoolExecutor(1))

    async def reports() -> None:
        guard.reported({("guarded", "0.9.0"), ("other", "1.0.1")})
        await asyncio.sleep(0.3)
        guard.reported({("guarded", "1.0.0")})  # the previous version: its numbers are compared too
        await asyncio.sleep(0.3)

    asyncio.run(reports())
    assert len(guard.checks) == 1


def test_a_rollout_made_after_the_list_was_read_is_still_checked(tmp_path: Path) -> None:
    registry, store = setup(tmp_path)
    registry.rollback("guarded", "stable")  # no guarded rollout when the guard first reads the list
    guard = CountingGuard(registry, store, ThreadPoolExecutor(1))

    async def reports() -> None:
        guard.reported({("guarded", "1.0.0")})  # the guard reads the list now: nothing guarded
        await asyncio.sleep(0.2)
        registry.release("guarded", "1.0.1", "stable", 20, halt_if="errors>50%,devices>=3")
        for _ in range(3):  # within the second the list is kept: all of the rollout's reports
            store.ingest(report("guarded", "1.0.1", functions={"f": ([1.0] * 4, {"e": 4})}))
            guard.reported({("guarded", "1.0.1")})
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)

    asyncio.run(reports())
    halted = registry.history("guarded")[0]
    assert halted["version"] == "1.0.1" and halted["halt_reason"] == "halted: error rate 100.0% > 50% over 3 devices"
