"""A bundle's telemetry declarations: the signals it reports and the alerts a device raises.

bundle.toml:

    [telemetry.signals.top_score]        # a value the workflow records: ctx.metrics.record("top_score", x)
    edges = [0.5, 0.7, 0.8, 0.9, 0.95]   # increasing bin edges: (-inf, e0), [e0, e1), ..., [e_last, +inf)
    reference = [2, 5, 13, 30, 30, 20]   # one non-negative count per bin (len(edges) + 1)

    [[telemetry.alerts]]
    name = "slow-classify"               # [a-z][a-z0-9-]*
    function = "classify_features"       # optional: one exported function (default: all calls)
    p95_ms = 40.0                        # exactly one of p95_ms, error_rate, psi (psi needs `signal`)
    min_calls = 20                       # optional, default 20

The manifest carries them with every fractional number as a decimal string (canonical JSON
holds no floats: device/manifest.py):

    "telemetry": {"signals": {"top_score": {"edges": ["0.5", ...], "reference": [2, ...]}},
                  "alerts": [{"name": "slow-classify", "function": "classify_features", "p95_ms": "40", "min_calls": 20}]}

`parse_toml` returns every problem of the [telemetry] table (each a key path and a message) so a
build names them all; `parse_manifest` refuses a malformed field with one BundleError. Whether
an alert's `function` is exported is the build's check (bundles/checks.py): only it loads the
workflow.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import BundleError

__all__ = ["Alert", "DEFAULT_MIN_CALLS", "METRICS", "Signal", "Telemetry", "decimal_text", "parse_manifest", "parse_toml"]

DEFAULT_MIN_CALLS = 20
# What an alert compares with its threshold; exactly one per alert.
METRICS = ("p95_ms", "error_rate", "psi")
_ALERT_NAME = re.compile(r"[a-z][a-z0-9-]*")
_SIGNAL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a manifest key and a Python-friendly metrics name
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
_SIGNAL_KEYS = ("edges", "reference")
_ALERT_KEYS = ("name", "function", "signal", *METRICS, "min_calls")

Problem = tuple[tuple[str, ...], str]  # the key path in bundle.toml, and what is wrong


@dataclass(frozen=True)
class Signal:
    edges: tuple[str, ...]  # decimal strings, increasing
    reference: tuple[int, ...]  # len(edges) + 1 counts

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "reference": list(self.reference)}


@dataclass(frozen=True)
class Alert:
    name: str
    metric: str  # one of METRICS
    threshold: str  # a decimal string
    min_calls: int = DEFAULT_MIN_CALLS
    function: str | None = None
    signal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.function is not None:
            data["function"] = self.function
        if self.signal is not None:
            data["signal"] = self.signal
        data[self.metric] = self.threshold
        data["min_calls"] = self.min_calls
        return data


@dataclass(frozen=True)
class Telemetry:
    signals: dict[str, Signal] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.signals or self.alerts)

    def to_manifest(self) -> dict[str, Any]:
        """{"telemetry": {...}}, or nothing for a bundle that declares none (its manifest is as before)."""
        if not self:
            return {}
        return {"telemetry": {"signals": {k: s.to_dict() for k, s in self.signals.items()},
                              "alerts": [a.to_dict() for a in self.alerts]}}


def decimal_text(value: float | int) -> str:
    """A TOML number as the manifest's decimal string: 40.0 -> "40", 1e-05 -> "0.00001"."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_toml(table: Any) -> tuple[Telemetry, list[Problem]]:
    """bundle.toml's [telemetry] table: the declarations, and every problem found (empty when none)."""
    problems: list[Problem] = []
    if not isinstance(table, dict):
        return Telemetry(), [(("telemetry",), f"[telemetry] must be a table, got {type(table).__name__}")]
    for key in table:
        if key not in ("signals", "alerts"):
            problems.append((("telemetry", key), f"[telemetry] unknown key {key!r}{_hint(key, ('signals', 'alerts'))} "
                                                 "(known: signals, alerts)"))
    signals = _toml_signals(table.get("signals", {}), problems)
    alerts = _toml_alerts(table.get("alerts", []), signals, problems)
    return Telemetry(signals, tuple(alerts)), problems


def _toml_signals(table: Any, problems: list[Problem]) -> dict[str, Signal]:
    if not isinstance(table, dict):
        problems.append((("telemetry", "signals"),
                         "[telemetry.signals] must be a table of signals, one [telemetry.signals.NAME] each"))
        return {}
    signals = {}
    for name, spec in table.items():
        keys = ("telemetry", "signals", name)
        where = f"[telemetry.signals.{name}]"
        if not _SIGNAL_NAME.fullmatch(name):
            problems.append((keys, f"{where}: signal name {name!r} must be ASCII letters, digits and '_', "
                                   "not starting with a digit"))
            continue
        if not isinstance(spec, dict):
            problems.append((keys, f"{where} must be a table with 'edges' and 'reference'"))
            continue
        before = len(problems)
        for key in spec:
            if key not in _SIGNAL_KEYS:
                problems.append(((*keys, key), f"{where} unknown key {key!r}{_hint(key, _SIGNAL_KEYS)} "
                                               "(known: edges, reference)"))
        for key in _SIGNAL_KEYS:
            if key not in spec:
                problems.append((keys, f"{where} missing required key {key!r}"))
        edges, reference = spec.get("edges"), spec.get("reference")
        if "edges" in spec and (not isinstance(edges, list) or not edges or not all(_is_number(e) for e in edges)):
            problems.append(((*keys, "edges"), f"{where} 'edges' must be a non-empty list of finite numbers, got {edges!r}"))
        elif isinstance(edges, list) and any(b <= a for a, b in itertools.pairwise(edges)):
            at = next(i for i, (a, b) in enumerate(itertools.pairwise(edges), start=1) if b <= a)
            problems.append(((*keys, "edges"), f"{where} 'edges' must be strictly increasing: edges[{at}] = {edges[at]!r} "
                                               f"is not above edges[{at - 1}] = {edges[at - 1]!r}"))
        if "reference" in spec and (not isinstance(reference, list) or not all(_is_int(c) and c >= 0 for c in reference)):
            problems.append(((*keys, "reference"),
                             f"{where} 'reference' must be a list of counts (integers >= 0), got {reference!r}"))
        elif isinstance(reference, list) and isinstance(edges, list) and len(reference) != len(edges) + 1:
            problems.append(((*keys, "reference"), f"{where} 'reference' has {len(reference)} counts; {len(edges)} edges make "
                                                   f"{len(edges) + 1} bins, so it needs {len(edges) + 1}"))
        elif isinstance(reference, list) and not sum(reference):
            problems.append(((*keys, "reference"), f"{where} 'reference' counts are all 0: it must describe a distribution"))
        if len(problems) == before:
            signals[name] = Signal(tuple(decimal_text(e) for e in edges), tuple(reference))  # type: ignore[union-attr, arg-type]
    return signals


def _toml_alerts(items: Any, signals: dict[str, Signal], problems: list[Problem]) -> list[Alert]:
    if not isinstance(items, list) or not all(isinstance(a, dict) for a in items):
        problems.append((("telemetry", "alerts"), "telemetry.alerts must be an array of tables, one [[telemetry.alerts]] each"))
        return []
    alerts: list[Alert] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        keys = ("telemetry", "alerts", f"#{i}")  # which [[telemetry.alerts]]: bundles/validate.py finds its line
        name = item.get("name")
        where = f"[[telemetry.alerts]] {name!r}" if isinstance(name, str) else f"[[telemetry.alerts]] #{i + 1}"
        before = len(problems)
        for key in item:
            if key not in _ALERT_KEYS:
                problems.append(((*keys, key), f"{where}: unknown key {key!r}{_hint(key, _ALERT_KEYS)} "
                                               f"(known: {', '.join(_ALERT_KEYS)})"))
        if not isinstance(name, str) or not _ALERT_NAME.fullmatch(name):
            problems.append(((*keys, "name"), f"{where}: 'name' must be lower-case letters, digits and '-', starting with a "
                                              f"letter (e.g. \"slow-classify\"), got {name!r}"))
        elif name in seen:
            problems.append(((*keys, "name"), f"{where}: two alerts are named {name!r}"))
        else:
            seen.add(name)
        for key in ("function", "signal"):
            if key in item and not isinstance(item[key], str):
                problems.append(((*keys, key), f"{where}: {key!r} must be a string, got {item[key]!r}"))
        given = [m for m in METRICS if m in item]
        if len(given) != 1:
            problems.append((keys, f"{where}: give exactly one threshold of {', '.join(METRICS)}; "
                                   + (f"it has {len(given)}: {', '.join(given)}" if given else "it has none")))
        metric = given[0] if len(given) == 1 else None
        if metric is not None:
            _check_threshold(where, keys, metric, item[metric], problems)
        signal = item.get("signal")
        if metric == "psi" and signal is None:
            problems.append(((*keys, "psi"), f"{where}: a psi alert needs 'signal', the declared signal it watches"))
        if signal is not None and metric not in (None, "psi"):
            problems.append(((*keys, "signal"), f"{where}: 'signal' goes with a psi threshold only, not {metric}"))
        if isinstance(signal, str) and signal not in signals:
            problems.append(((*keys, "signal"), f"{where}: signal {signal!r} is not declared in [telemetry.signals]"
                                                f"{_hint(signal, signals)} (declared: {', '.join(signals) or 'none'})"))
        min_calls = item.get("min_calls", DEFAULT_MIN_CALLS)
        if not _is_int(min_calls) or min_calls < 1:
            problems.append(((*keys, "min_calls"), f"{where}: 'min_calls' must be an integer >= 1, got {min_calls!r}"))
        if len(problems) == before and metric is not None:
            alerts.append(Alert(name, metric, decimal_text(item[metric]), min_calls, item.get("function"), signal))
    return alerts


def _check_threshold(where: str, keys: tuple[str, ...], metric: str, value: Any, problems: list[Problem]) -> None:
    if not _is_number(value):
        problems.append(((*keys, metric), f"{where}: {metric!r} must be a number, got {value!r}"))
    elif value <= 0:
        problems.append(((*keys, metric), f"{where}: {metric!r} must be above 0, got {value!r}"))
    elif metric == "error_rate" and value >= 1:
        problems.append(((*keys, metric), f"{where}: 'error_rate' is a fraction of calls below 1 (0.05 is 5%), got {value!r}"))


def _hint(word: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_manifest(value: Any) -> Telemetry:
    """The manifest's "telemetry" field; BundleError naming what is malformed."""
    where = "manifest telemetry"
    if not isinstance(value, dict) or set(value) - {"signals", "alerts"}:
        raise BundleError(f"{where} must be an object with 'signals' and 'alerts', got {value!r}")
    signals_in, alerts_in = value.get("signals", {}), value.get("alerts", [])
    if not isinstance(signals_in, dict) or not isinstance(alerts_in, list):
        raise BundleError(f"{where}: 'signals' must be an object and 'alerts' a list")
    signals = {str(name): _manifest_signal(name, spec) for name, spec in signals_in.items()}
    alerts = tuple(_manifest_alert(i, item, signals) for i, item in enumerate(alerts_in))
    if len({a.name for a in alerts}) != len(alerts):
        raise BundleError(f"{where}: two alerts have the same name")
    return Telemetry(signals, alerts)


def _manifest_signal(name: Any, spec: Any) -> Signal:
    where = f"manifest telemetry signal {name!r}"
    if not isinstance(name, str) or not _SIGNAL_NAME.fullmatch(name):
        raise BundleError(f"{where}: the name must be ASCII letters, digits and '_'")
    if not isinstance(spec, dict) or set(spec) != set(_SIGNAL_KEYS):
        raise BundleError(f"{where} must have exactly 'edges' and 'reference'")
    edges, reference = spec["edges"], spec["reference"]
    if not isinstance(edges, list) or not edges or not all(isinstance(e, str) and _DECIMAL.fullmatch(e) for e in edges):
        raise BundleError(f"{where}: 'edges' must be a non-empty list of decimal strings such as \"0.5\", got {edges!r}")
    if any(Decimal(b) <= Decimal(a) for a, b in itertools.pairwise(edges)):
        raise BundleError(f"{where}: 'edges' {edges!r} must be strictly increasing")
    if (not isinstance(reference, list) or len(reference) != len(edges) + 1
            or not all(_is_int(c) and c >= 0 for c in reference) or not sum(reference)):
        raise BundleError(f"{where}: 'reference' must be {len(edges) + 1} counts (integers >= 0, not all 0), got {reference!r}")
    return Signal(tuple(edges), tuple(reference))


def _manifest_alert(index: int, item: Any, signals: dict[str, Signal]) -> Alert:
    where = f"manifest telemetry alert #{index + 1}"
    if not isinstance(item, dict) or set(item) - set(_ALERT_KEYS):
        raise BundleError(f"{where} must be an object with keys among {', '.join(_ALERT_KEYS)}, got {item!r}")
    name = item.get("name")
    if not isinstance(name, str) or not _ALERT_NAME.fullmatch(name):
        raise BundleError(f"{where}: name {name!r} must match {_ALERT_NAME.pattern}")
    given = [m for m in METRICS if m in item]
    if len(given) != 1:
        raise BundleError(f"{where} {name!r}: exactly one of {', '.join(METRICS)} must be given, got {given}")
    metric = given[0]
    threshold = item[metric]
    if not isinstance(threshold, str) or not _DECIMAL.fullmatch(threshold) or Decimal(threshold) <= 0:
        raise BundleError(f"{where} {name!r}: {metric} must be a decimal string above 0 such as \"40\", got {threshold!r}")
    function, signal, min_calls = item.get("function"), item.get("signal"), item.get("min_calls", DEFAULT_MIN_CALLS)
    if function is not None and not isinstance(function, str):
        raise BundleError(f"{where} {name!r}: function must be a string, got {function!r}")
    if (metric == "psi") != (signal is not None) or (signal is not None and signal not in signals):
        raise BundleError(f"{where} {name!r}: a psi alert names one declared signal, and only a psi alert does; "
                          f"got signal {signal!r}")
    if not _is_int(min_calls) or min_calls < 1:
        raise BundleError(f"{where} {name!r}: min_calls must be an integer >= 1, got {min_calls!r}")
    return Alert(name, metric, threshold, min_calls, function, signal)
