"""The shape of a telemetry report and of a log upload, checked field by field before anything is stored.

    report = check_report(parse_object(body))        # raises Refused(400, "bundles[0].functions.f.calls: ...")
    check_against_manifest(entry, index, manifest)   # models and signals the version declares
    upload = check_upload(parse_object(body))

Every refusal names the field (its path in the JSON) and what it must be. Devices are anonymous,
so a report holds only what the contract allows (docs/fleet.md): unknown fields are refused,
not ignored, and no free text beyond names the bundle itself declares.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..device.log import LEVELS
from . import histogram

__all__ = ["Declared", "LIMITS", "Refused", "check_against_manifest", "check_report", "check_upload"]

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_INSTALLATION = re.compile(r"[0-9a-f]{32}")
_BUNDLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z.+-]{1,64}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # a function, model or signal name
_CODE = re.compile(r"[a-z][a-z0-9-]{0,63}")  # an error code (docs/errors.md, or the bundle's own)
_INDEX = re.compile(r"-?(0|[1-9][0-9]{0,3})")
_REPORT_KEYS = ("schema", "id", "installation", "start", "end", "device", "bundles")
_DEVICE = {"cores": (1, 2, 4, 8, 16), "memory": ("<2GB", "2-4GB", "4-8GB", "8GB+", "unknown"),
           "browser": ("chromium", "firefox", "safari", "other")}
_ENTRY_KEYS = ("bundle", "version", "functions", "models", "startup", "signals")
_HIST_KEYS = ("n", "sum", "min", "max", "b")
_STARTUP = ("open", "python", "models")
_RAN_ON = ("device", "server")
_UPLOAD_KEYS = ("schema", "id", "bundle", "version", "lines")
_LINE_KEYS = ("t", "level", "logger", "message")
_LOG_LEVELS = (*LEVELS, "critical")
_MAX_COUNT = 1 << 40  # calls, runs, samples: far beyond a report's period, short of float trouble
_MAX_MS = 1e9  # about 11 days: no call takes longer
_MAX_TIME = 1 << 53  # ms since the epoch: JavaScript's largest exact integer


@dataclass(frozen=True)
class _Limits:
    bundles: int = 16  # sections of one report
    names: int = 64  # functions, models, signals of one section
    codes: int = 32  # error codes of one function
    buckets: int = 2000  # keys of one latency histogram (the indices of 1 us .. 11 days are ~700)
    lines: int = 100  # lines of one log upload
    message_bytes: int = 1024  # one log line's message, UTF-8
    logger_chars: int = 128


LIMITS = _Limits()
_LOW_INDEX, _HIGH_INDEX = histogram.index(0.0), histogram.index(_MAX_MS)


class Refused(Exception):
    """A request refused with `status` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Declared:
    """What a published version declares that a report may name: its models, its signals' bin counts."""

    models: frozenset[str]
    signals: dict[str, int]


def _envelope(body: dict[str, Any], what: str, keys: Any) -> None:
    """The fields every body shares, checked the same way: exactly `keys`, schema 1, a uuid v4 id."""
    _keys(body, what, keys, required=keys)
    if body["schema"] != 1 or isinstance(body["schema"], bool):
        raise Refused(400, f"schema: {body['schema']!r} is not a schema this server reads (1)")
    _match(body["id"], _UUID4, "id", "a lowercase uuid v4")


def check_report(body: dict[str, Any]) -> dict[str, Any]:
    """`body` if it is a telemetry report of the contract's shape; Refused(400) naming the first bad field."""
    _envelope(body, "the report", _REPORT_KEYS)
    _match(body["installation"], _INSTALLATION, "installation", "32 lowercase hex digits")
    start, end = _int(body["start"], "start", _MAX_TIME), _int(body["end"], "end", _MAX_TIME)
    if start > end:
        raise Refused(400, f"start: {start} is after end {end}")
    _device(body["device"])
    sections = body["bundles"]
    if not isinstance(sections, list) or not 1 <= len(sections) <= LIMITS.bundles:
        raise Refused(400, f"bundles: must be an array of 1 to {LIMITS.bundles} sections")
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(sections):
        key = _section(entry, f"bundles[{i}]")
        if key in seen:
            raise Refused(400, f"bundles[{i}]: {key[0]} {key[1]} appears twice in the report")
        seen.add(key)
    return body


def check_against_manifest(entry: dict[str, Any], index: int, declared: Declared) -> None:
    """Refused(400) for a model or signal the version does not declare, or a signal of the wrong bin count."""
    where = f"bundles[{index}]"
    for name in entry.get("models", {}):
        if name not in declared.models:
            raise Refused(400, f"{where}.models: {entry['bundle']} {entry['version']} has no model {name!r} "
                               f"(its models: {sorted(declared.models)})")
    for name, counts in entry.get("signals", {}).items():
        bins = declared.signals.get(name)
        if bins is None:
            raise Refused(400, f"{where}.signals: {entry['bundle']} {entry['version']} declares no signal {name!r} "
                               f"(its signals: {sorted(declared.signals)})")
        if len(counts["counts"]) != bins:
            raise Refused(400, f"{where}.signals.{name}.counts: {len(counts['counts'])} bins, the signal has {bins}")


def check_upload(body: dict[str, Any]) -> dict[str, Any]:
    """`body` if it is a log upload of the contract's shape; Refused(400) naming the first bad field."""
    _envelope(body, "the upload", _UPLOAD_KEYS)
    _match(body["bundle"], _BUNDLE, "bundle", "a bundle name")
    _match(body["version"], _VERSION, "version", "a bundle version")
    lines = body["lines"]
    if not isinstance(lines, list) or not 1 <= len(lines) <= LIMITS.lines:
        raise Refused(400, f"lines: must be an array of 1 to {LIMITS.lines} lines")
    for i, line in enumerate(lines):
        where = f"lines[{i}]"
        _keys(line, where, _LINE_KEYS, required=_LINE_KEYS)
        _int(line["t"], f"{where}.t", _MAX_TIME)
        if line["level"] not in _LOG_LEVELS:
            raise Refused(400, f"{where}.level: {line['level']!r} is not one of {', '.join(_LOG_LEVELS)}")
        logger, message = line["logger"], line["message"]
        if not isinstance(logger, str) or not 0 < len(logger) <= LIMITS.logger_chars:
            raise Refused(400, f"{where}.logger: must be a logger name of 1 to {LIMITS.logger_chars} characters")
        if not isinstance(message, str):
            raise Refused(400, f"{where}.message: must be a string")
        if len(message.encode()) > LIMITS.message_bytes:
            raise Refused(400, f"{where}.message: {len(message.encode())} bytes; at most {LIMITS.message_bytes} "
                               "(the device cuts longer ones)")
    return body


def _device(device: Any) -> None:
    _keys(device, "device", ("cores", "memory", "isolated", "threads", "browser"),
          required=("cores", "memory", "isolated", "threads", "browser"))
    for key, allowed in _DEVICE.items():
        if device[key] not in allowed or isinstance(device[key], bool):
            raise Refused(400, f"device.{key}: {device[key]!r} is not one of {', '.join(map(str, allowed))}")
    if not isinstance(device["isolated"], bool):
        raise Refused(400, f"device.isolated: must be true or false, not {device['isolated']!r}")
    if _int(device["threads"], "device.threads", 256) < 1:
        raise Refused(400, "device.threads: must be at least 1")


def _section(entry: Any, where: str) -> tuple[str, str]:
    _keys(entry, where, _ENTRY_KEYS, required=("bundle", "version"))
    _match(entry["bundle"], _BUNDLE, f"{where}.bundle", "a bundle name")
    _match(entry["version"], _VERSION, f"{where}.version", "a bundle version")
    for name, f in _named(entry, "functions", where).items():
        _function(f, f"{where}.functions.{name}")
    for name, m in _named(entry, "models", where).items():
        at = f"{where}.models.{name}"
        _keys(m, at, ("runs", "latency"), required=("runs", "latency"))
        _latency(m["latency"], f"{at}.latency", _int(m["runs"], f"{at}.runs", _MAX_COUNT))
    for phase, h in _named(entry, "startup", where).items():
        if phase not in _STARTUP:
            raise Refused(400, f"{where}.startup: {phase!r} is not a start-up phase ({', '.join(_STARTUP)})")
        _latency(h, f"{where}.startup.{phase}", _MAX_COUNT)
    for name, s in _named(entry, "signals", where).items():
        at = f"{where}.signals.{name}"
        _keys(s, at, ("n", "counts"), required=("n", "counts"))
        n, counts = _int(s["n"], f"{at}.n", _MAX_COUNT), s["counts"]
        if not isinstance(counts, list) or not 2 <= len(counts) <= LIMITS.names:
            raise Refused(400, f"{at}.counts: must be an array of 2 to {LIMITS.names} counts")
        if sum(_int(c, f"{at}.counts[{i}]", _MAX_COUNT) for i, c in enumerate(counts)) != n:
            raise Refused(400, f"{at}: the counts add up to {sum(counts)}, not n={n}")
    return entry["bundle"], entry["version"]


def _function(f: Any, at: str) -> None:
    _keys(f, at, ("calls", "errors", "latency", "ranOn"), required=("calls", "latency"))
    calls = _int(f["calls"], f"{at}.calls", _MAX_COUNT)
    errors = f.get("errors", {})
    if not isinstance(errors, dict) or len(errors) > LIMITS.codes:
        raise Refused(400, f"{at}.errors: must be an object of at most {LIMITS.codes} error codes and counts")
    failed = 0
    for code, count in errors.items():
        _match(code, _CODE, f"{at}.errors", "an error code (lowercase letters, digits and '-')")
        failed += _int(count, f"{at}.errors.{code}", _MAX_COUNT)
    if failed > calls:
        raise Refused(400, f"{at}.errors: {failed} errors in {calls} calls (calls counts the failed ones too)")
    ran = f.get("ranOn", {})
    if not isinstance(ran, dict) or not set(ran) <= set(_RAN_ON):
        raise Refused(400, f"{at}.ranOn: must map {' and/or '.join(_RAN_ON)} to counts")
    if sum(_int(v, f"{at}.ranOn.{k}", _MAX_COUNT) for k, v in ran.items()) > calls:
        raise Refused(400, f"{at}.ranOn: more calls than {calls}")
    _latency(f["latency"], f"{at}.latency", calls)


def _latency(h: Any, at: str, most: int) -> None:
    """A latency histogram (histogram.py) of at most `most` samples, self-consistent."""
    _keys(h, at, _HIST_KEYS, required=_HIST_KEYS)
    n = _int(h["n"], f"{at}.n", most)
    total = _number(h["sum"], f"{at}.sum", _MAX_MS * _MAX_COUNT)
    buckets = h["b"]
    if not isinstance(buckets, dict) or len(buckets) > LIMITS.buckets:
        raise Refused(400, f"{at}.b: must be an object of at most {LIMITS.buckets} buckets")
    counted = 0
    for key, count in buckets.items():
        if not _INDEX.fullmatch(key) or not _LOW_INDEX <= int(key) <= _HIGH_INDEX:
            raise Refused(400, f"{at}.b: {key[:20]!r} is not a bucket index ({_LOW_INDEX} to {_HIGH_INDEX})")
        counted += _int(count, f"{at}.b.{key}", _MAX_COUNT)
    if counted != n:
        raise Refused(400, f"{at}: the buckets hold {counted} samples, not n={n}")
    if n == 0:
        if h["min"] is not None or h["max"] is not None or total != 0:
            raise Refused(400, f"{at}: an empty histogram has sum 0 and min, max null")
        return
    low, high = _number(h["min"], f"{at}.min", _MAX_MS), _number(h["max"], f"{at}.max", _MAX_MS)
    if low > high:
        raise Refused(400, f"{at}: min {low} is above max {high}")


def _named(entry: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    items = entry.get(key, {})
    if not isinstance(items, dict) or len(items) > LIMITS.names:
        raise Refused(400, f"{where}.{key}: must be an object of at most {LIMITS.names} names")
    for name in items:
        _match(name, _NAME, f"{where}.{key}", "a name of letters, digits, '_', '.' or '-'")
    return items


def _keys(value: Any, where: str, allowed: tuple[str, ...], *, required: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise Refused(400, f"{where}: must be an object")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise Refused(400, f"{where}: unknown field {unknown[0][:40]!r} (the fields are {', '.join(allowed)})")
    missing = [k for k in required if k not in value]
    if missing:
        raise Refused(400, f"{where}: the field {missing[0]!r} is missing")


def _match(value: Any, pattern: re.Pattern[str], where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value[:40]) if isinstance(value, str) else repr(value)[:40]
        raise Refused(400, f"{where}: {shown} is not {what}")
    return value


def _int(value: Any, where: str, most: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise Refused(400, f"{where}: {str(value)[:40]} is not an integer from 0 to {most}")
    return value


def _number(value: Any, where: str, most: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 <= value <= most:
        raise Refused(400, f"{where}: {str(value)[:40]} is not a number from 0 to {most:g}")
    return float(value)
