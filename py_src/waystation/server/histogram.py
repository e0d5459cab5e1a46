"""The telemetry histograms' arithmetic, the same as the device's (web/ does it in JS).

Latency histograms are DDSketch-style log buckets, values in milliseconds, mergeable by adding
counts; any quantile read from one is within 2% (GAMMA - 1 over 2) of a value of the samples:

    {"n": 12, "sum": 123.4, "min": 0.8, "max": 31.0, "b": {"-5": 1, "12": 3}}

    index(v)  = ceil(log(max(v, 1e-3)) / log(GAMMA))   # the bucket's key, as a string in JSON
    value(i)  = 2 * GAMMA**i / (GAMMA + 1)              # the bucket's representative value

Signal histograms count a recorded value per bin of declared edges: {"n": 40, "counts": [...]},
and PSI compares such counts with the bundle's reference distribution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["GAMMA", "empty", "from_samples", "index", "merge", "psi", "quantile", "quantile_of", "value"]

GAMMA = 1.04
_LOG_GAMMA = math.log(GAMMA)
_SMALLEST = 1e-3  # ms: every shorter time shares the bucket of 1 microsecond
_PSI_FLOOR = 1e-4  # a proportion of zero would make ln(a / r) infinite


def index(v: float) -> int:
    return math.ceil(math.log(max(v, _SMALLEST)) / _LOG_GAMMA)


def value(i: int) -> float:
    return 2 * GAMMA ** i / (GAMMA + 1)


def empty() -> dict[str, Any]:
    return {"n": 0, "sum": 0.0, "min": None, "max": None, "b": {}}


def from_samples(samples: Iterable[float]) -> dict[str, Any]:
    """The histogram of these values (ms), as a device builds it."""
    h = empty()
    buckets: dict[str, int] = h["b"]
    for v in samples:
        key = str(index(v))
        buckets[key] = buckets.get(key, 0) + 1
        h["n"] += 1
        h["sum"] += v
        h["min"] = v if h["min"] is None else min(h["min"], v)
        h["max"] = v if h["max"] is None else max(h["max"], v)
    return h


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """One histogram holding both's samples."""
    buckets: dict[str, int] = dict(a["b"])
    for key, count in b["b"].items():
        buckets[key] = buckets.get(key, 0) + count
    return {
        "n": a["n"] + b["n"], "sum": a["sum"] + b["sum"],
        "min": _pick(min, a["min"], b["min"]), "max": _pick(max, a["max"], b["max"]), "b": buckets,
    }


def quantile(h: Mapping[str, Any], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of the histogram's samples, None when it has none."""
    return quantile_of(h["n"], h["min"], h["max"], ((int(k), c) for k, c in h["b"].items()), q)


def quantile_of(n: int, low: float | None, high: float | None, buckets: Iterable[tuple[int, int]], q: float) -> float | None:
    """The same over (index, count) pairs in any order, as a SQL query returns them."""
    if n <= 0 or low is None or high is None:
        return None
    rank = q * (n - 1)
    seen = 0
    found = None
    for i, count in sorted(buckets):
        seen += count
        if seen > rank:
            found = i
            break
    if found is None:  # counts that add up to less than n: the largest sample is the best answer
        return float(high)
    return min(max(value(found), float(low)), float(high))


def psi(actual: Sequence[int], reference: Sequence[int]) -> float | None:
    """The population stability index of `actual` counts against `reference` counts, same bins.

    None when either side has no counts: no distribution to compare."""
    if len(actual) != len(reference):
        raise ValueError(f"PSI needs as many bins on both sides: {len(actual)} actual, {len(reference)} reference")
    total_a, total_r = sum(actual), sum(reference)
    if total_a <= 0 or total_r <= 0:
        return None
    score = 0.0
    for a_count, r_count in zip(actual, reference):
        a = max(a_count / total_a, _PSI_FLOOR)
        r = max(r_count / total_r, _PSI_FLOOR)
        score += (a - r) * math.log(a / r)
    return round(score, 4)


def _pick(choose: Any, x: float | None, y: float | None) -> float | None:
    if x is None:
        return y
    if y is None:
        return x
    return float(choose(x, y))
