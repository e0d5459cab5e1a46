"""What the reports of one bundle version add up to: the numbers halt rules and the dashboard read.

    stats = store.version_stats("digits", "1.0.1")       # telemetry_store.TelemetryStore
    stats.devices, stats.error_rate, stats.p95            # installations, errors / calls, ms
    stats.to_dict()                                       # JSON for the dashboard

Latencies are in milliseconds and None while the version has no calls; a rate is a fraction
(0.05 is 5%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["VersionStats"]


@dataclass(frozen=True)
class VersionStats:
    devices: int = 0
    calls: int = 0
    errors: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    # {function: {"calls", "errors", "error_rate", "p50", "p95", "p99"}}
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {signal: {"n", "counts", "psi"}}; psi is None for a signal the manifest gives no reference
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices, "calls": self.calls, "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p50": _ms(self.p50), "p95": _ms(self.p95), "p99": _ms(self.p99),
            "functions": self.functions, "signals": self.signals,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
