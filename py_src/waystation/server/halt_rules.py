"""Halt rules: when a guarded rollout stops by itself.

    rules = parse_halt_rules("errors>1%,p95>1.5x,devices>=10")   # ValueError naming the bad part
    reason = rules.check(new_stats, old_stats)                    # "halted: ...", or None

Terms, comma-separated:

    errors>X%          the new version's error rate (errors / calls) above X percent
    errors>Nx          above N times the previous version's
    p50|p95|p99>Nms    the new version's call latency percentile above N milliseconds
    p50|p95|p99>Nx     above N times the previous version's
    devices>=N         decide nothing before N distinct installations of the new version
                       reported (default 10)

A relative term needs the previous version's numbers: without calls from it, the term waits.
A previous error rate of zero counts as 0.1% (_RATE_FLOOR), so that one failure among many
calls of the new version is not an infinite ratio.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .version_stats import VersionStats

__all__ = ["DEFAULT_MIN_DEVICES", "HaltRules", "Term", "parse_halt_rules"]

DEFAULT_MIN_DEVICES = 10
_RATE_FLOOR = 0.001
_TERM = re.compile(r"(errors|p50|p95|p99)>(\d+(?:\.\d+)?)(%|x|ms)")
_DEVICES = re.compile(r"devices>=(\d+)")
_UNITS = {"errors": ("%", "x"), "p50": ("ms", "x"), "p95": ("ms", "x"), "p99": ("ms", "x")}


@dataclass(frozen=True)
class Term:
    metric: str   # "errors", "p50", "p95" or "p99"
    limit: float
    unit: str     # "%" or "ms" (absolute), "x" (relative to the previous version)

    def __str__(self) -> str:
        return f"{self.metric}>{_num(self.limit)}{self.unit}"

    def breached(self, new: VersionStats, old: VersionStats | None) -> str | None:
        """What this term finds wrong with `new` (against `old`), or None."""
        if self.metric == "errors":
            return self._errors(new, old)
        return self._latency(new, old)

    def _errors(self, new: VersionStats, old: VersionStats | None) -> str | None:
        rate = new.error_rate
        if self.unit == "%":
            return f"error rate {_pct(rate)} > {_num(self.limit)}%" if rate * 100 > self.limit else None
        if old is None or not old.calls:
            return None
        base = max(old.error_rate, _RATE_FLOOR)
        if rate > self.limit * base:
            return f"error rate {_pct(rate)} > {_num(self.limit)}x the previous version's {_pct(old.error_rate)}"
        return None

    def _latency(self, new: VersionStats, old: VersionStats | None) -> str | None:
        value: float | None = getattr(new, self.metric)
        if value is None:
            return None
        if self.unit == "ms":
            return f"{self.metric} {value:.1f} ms > {_num(self.limit)} ms" if value > self.limit else None
        before: float | None = getattr(old, self.metric) if old is not None else None
        if before is None:
            return None
        if value > self.limit * before:
            return f"{self.metric} {value:.1f} ms > {_num(self.limit)}x the previous version's {before:.1f} ms"
        return None


@dataclass(frozen=True)
class HaltRules:
    terms: tuple[Term, ...]
    min_devices: int = DEFAULT_MIN_DEVICES

    def __str__(self) -> str:
        return ",".join([*(str(t) for t in self.terms), f"devices>={self.min_devices}"])

    def check(self, new: VersionStats, old: VersionStats | None) -> str | None:
        """The reason to halt the new version (the first term breached), or None.

        Nothing is decided before `min_devices` installations of the new version reported calls."""
        if new.devices < self.min_devices or not new.calls:
            return None
        for term in self.terms:
            found = term.breached(new, old)
            if found is not None:
                return f"halted: {found} over {new.devices} devices"
        return None


def parse_halt_rules(text: str) -> HaltRules:
    """The rules written in `text`; a ValueError names the part that is not a rule."""
    terms: list[Term] = []
    min_devices: int | None = None
    parts = [p.strip() for p in text.split(",")]
    if not text.strip():
        raise ValueError("halt rules are empty; write e.g. 'errors>1%,p95>1.5x,devices>=10'")
    for part in parts:
        if (devices := _DEVICES.fullmatch(part)) is not None:
            if min_devices is not None:
                raise ValueError(f"halt rule {part!r}: devices>= is given twice")
            min_devices = int(devices.group(1))
            if min_devices < 1:
                raise ValueError(f"halt rule {part!r}: devices>= needs at least 1")
            continue
        terms.append(_term(part))
    seen = [(t.metric, t.unit) for t in terms]
    for key in seen:
        if seen.count(key) > 1:
            raise ValueError(f"halt rules {text!r}: {key[0]}>...{key[1]} is given twice")
    if not terms:
        raise ValueError(f"halt rules {text!r} hold no errors or latency term (e.g. errors>1%, p95>1.5x)")
    return HaltRules(tuple(terms), DEFAULT_MIN_DEVICES if min_devices is None else min_devices)


def _term(part: str) -> Term:
    found = _TERM.fullmatch(part)
    if found is None:
        raise ValueError(
            f"halt rule {part!r} is not one of errors>X%, errors>Nx, p50|p95|p99>Nms, p50|p95|p99>Nx, devices>=N")
    metric, number, unit = found.groups()
    if unit not in _UNITS[metric]:
        raise ValueError(f"halt rule {part!r}: {metric} takes {' or '.join(_UNITS[metric])}, not {unit}")
    limit = float(number)
    if not math.isfinite(limit) or limit <= 0:
        raise ValueError(f"halt rule {part!r}: the limit must be above 0")
    if unit == "%" and limit >= 100:
        raise ValueError(f"halt rule {part!r}: an error rate limit must be below 100%")
    return Term(metric, limit, unit)


def _num(value: float) -> str:
    return f"{value:g}"


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"
