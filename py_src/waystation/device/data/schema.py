"""Declared tables and their columns: parsing bundle.toml's `[events.*]` and `[features.*]`, checking values.

    [events.clicks]
    fields = { item_id = "str", dwell_ms = "int", source = "str?" }   # "?" marks a field optional
    retention = { days = 7, rows = 100000 }                           # or hours / minutes / seconds
    relay = ["item_id", "dwell_ms"]                                  # the fields that may leave the device
    hook = "check_click"                                             # a workflow function, @event_hook("clicks")

    [features.items]
    key = "item_id"
    max_age = "1h"                                                   # 30s, 15m, 1h30m, 2d

Column types: str, int, float, bool, vector[N] (float32, stored as an N*4-byte little-endian
BLOB). Every event table also has `id` (128-bit random hex) and `ts` (seconds since the epoch).
The same declarations travel in the signed manifest, normalised (`Declarations.to_manifest`:
integers and strings only, as manifests hold no floats).
"""

from __future__ import annotations

import array
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError

__all__ = [
    "Column",
    "Declarations",
    "EventTable",
    "FeatureTable",
    "check_name",
    "pack_vector",
    "parse_duration",
    "parse_type",
    "unpack_vector",
]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_VECTOR = re.compile(r"vector\[([1-9][0-9]{0,5})\]")
_DURATION = re.compile(r"(\d+)(d|h|m|s)")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SCALARS = ("str", "int", "float", "bool")
_RESERVED = ("id", "ts")
_INT64 = 2**63


def check_name(name: Any, what: str) -> str:
    """A table or column name: lower-case letters, digits, `_`, starting with a letter (never SQL text)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(f"{what} {name!r} is not a valid name (lower-case letters, digits and _, starting with a letter)")
    return name


def parse_type(text: Any, where: str) -> tuple[str, int | None, bool]:
    """'str' / 'int?' / 'vector[384]' -> (kind, dimension, optional)."""
    if not isinstance(text, str):
        raise DataError(f"{where}: type must be a string such as 'str' or 'vector[384]', got {text!r}")
    optional = text.endswith("?")
    base = text[:-1] if optional else text
    if base in _SCALARS:
        return base, None, optional
    match = _VECTOR.fullmatch(base)
    if match:
        return "vector", int(match.group(1)), optional
    raise DataError(f"{where}: unknown type {text!r}; types are str, int, float, bool, vector[N], with ? for optional")


def parse_duration(text: Any, where: str) -> int:
    """'1h30m' -> 5400 seconds."""
    if not isinstance(text, str) or not text or _DURATION.sub("", text):
        raise DataError(f"{where}: {text!r} is not a duration such as '30s', '15m', '1h30m' or '2d'")
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))


def pack_vector(values: Any, dim: int, where: str) -> bytes:
    """A float32 little-endian BLOB of exactly `dim` numbers."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        if len(values) != dim * 4:
            raise DataError(f"{where}: expected {dim} float32 values ({dim * 4} bytes), got {len(values)} bytes")
        return bytes(values)
    if not isinstance(values, (list, tuple)) or len(values) != dim:
        got = f"{len(values)} values" if isinstance(values, (list, tuple)) else type(values).__name__
        raise DataError(f"{where}: expected a vector of {dim} numbers, got {got}")
    try:
        packed = array.array("f", values)
    except TypeError:
        raise DataError(f"{where}: a vector holds numbers only") from None
    if any(isinstance(v, bool) for v in values):
        raise DataError(f"{where}: a vector holds numbers only, not booleans")
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def unpack_vector(blob: bytes) -> list[float]:
    values = array.array("f")
    values.frombytes(blob)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


@dataclass(frozen=True)
class Column:
    """One column: its name, kind (str, int, float, bool, vector, ts) and, for vectors, dimension."""

    name: str
    kind: str
    dim: int | None = None
    optional: bool = False

    @property
    def type_text(self) -> str:
        base = f"vector[{self.dim}]" if self.kind == "vector" else self.kind
        return base + ("?" if self.optional else "")

    @property
    def sql_type(self) -> str:
        return {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER", "vector": "BLOB", "ts": "REAL"}[self.kind]

    def encode(self, value: Any, where: str) -> Any:
        """The value as stored, or DataError naming `where` (table and field) and what was expected."""
        if value is None:
            if self.optional:
                return None
            raise DataError(f"{where}: a value is required (the field is not optional)")
        kind = self.kind
        if kind == "str":
            if not isinstance(value, str):
                raise DataError(f"{where}: expected str, got {type(value).__name__}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise DataError(f"{where}: expected bool, got {type(value).__name__}")
            return int(value)
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise DataError(f"{where}: expected int, got {type(value).__name__}")
            if not -_INT64 <= value < _INT64:
                raise DataError(f"{where}: {value} does not fit in 64 bits")
            return value
        if kind in ("float", "ts"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DataError(f"{where}: expected a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise DataError(f"{where}: {value} is not a finite number")
            return float(value)
        assert self.dim is not None
        return pack_vector(value, self.dim, where)

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "bool":
            return bool(value)
        if self.kind == "vector":
            return unpack_vector(value)
        return value


ID = Column("id", "str")
TS = Column("ts", "ts")


@dataclass(frozen=True)
class EventTable:
    name: str
    fields: dict[str, Column]
    retention_seconds: int | None = None
    retention_rows: int | None = None
    relay: tuple[str, ...] = ()
    hook: str | None = None

    @property
    def columns(self) -> dict[str, Column]:
        """Every column a query sees: id, ts, then the declared fields."""
        return {"id": ID, "ts": TS, **self.fields}

    def to_manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fields": {n: c.type_text for n, c in self.fields.items()}}
        retention = {}
        if self.retention_seconds is not None:
            retention["seconds"] = self.retention_seconds
        if self.retention_rows is not None:
            retention["rows"] = self.retention_rows
        if retention:
            data["retention"] = retention
        if self.relay:
            data["relay"] = list(self.relay)
        if self.hook:
            data["hook"] = self.hook
        return data

    @classmethod
    def parse(cls, name: str, config: Any) -> EventTable:
        where = f"[events.{name}]"
        check_name(name, "event table")
        if not isinstance(config, dict):
            raise DataError(f"{where} must be a table with 'fields'")
        unknown = set(config) - {"fields", "retention", "relay", "hook"}
        if unknown:
            raise DataError(f"{where}: unknown keys {sorted(unknown)}; keys are fields, retention, relay, hook")
        raw_fields = config.get("fields")
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise DataError(f"{where}: 'fields' must map field names to types, e.g. {{ item_id = \"str\" }}")
        fields: dict[str, Column] = {}
        for fname, ftype in raw_fields.items():
            check_name(fname, f"{where} field")
            if fname in _RESERVED:
                raise DataError(f"{where}: field {fname!r} is reserved (every event has id and ts)")
            kind, dim, optional = parse_type(ftype, f"{where} field {fname!r}")
            fields[fname] = Column(fname, kind, dim, optional)
        seconds, rows = _retention(config.get("retention", {}), where)
        relay = config.get("relay", [])
        if not isinstance(relay, list) or not all(isinstance(r, str) for r in relay):
            raise DataError(f"{where}: 'relay' must be a list of field names")
        for r in relay:
            if r not in fields and r not in _RESERVED:
                raise DataError(f"{where}: relay names {r!r}, which is not a field; fields are {sorted(fields)}")
        hook = config.get("hook")
        if hook is not None and (not isinstance(hook, str) or not hook.isidentifier()):
            raise DataError(f"{where}: 'hook' must name a workflow function, got {hook!r}")
        return cls(name, fields, seconds, rows, tuple(r for r in relay if r not in _RESERVED), hook)


def _retention(config: Any, where: str) -> tuple[int | None, int | None]:
    if not isinstance(config, dict):
        raise DataError(f"{where}: 'retention' must be a table such as {{ days = 7, rows = 100000 }}")
    unknown = set(config) - {"days", "hours", "minutes", "seconds", "rows"}
    if unknown:
        raise DataError(f"{where}: unknown retention keys {sorted(unknown)}; keys are days, hours, minutes, seconds, rows")
    for key, value in config.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DataError(f"{where}: retention {key} must be a positive integer, got {value!r}")
    units = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
    seconds = sum(config[k] * n for k, n in units.items() if k in config)
    return (seconds or None), config.get("rows")


@dataclass(frozen=True)
class FeatureTable:
    name: str
    key: str
    max_age: str | None = None

    @property
    def max_age_seconds(self) -> int | None:
        return None if self.max_age is None else parse_duration(self.max_age, f"[features.{self.name}] max_age")

    def to_manifest(self) -> dict[str, Any]:
        return {"key": self.key, **({"max_age": self.max_age} if self.max_age else {})}

    @classmethod
    def parse(cls, name: str, config: Any) -> FeatureTable:
        where = f"[features.{name}]"
        check_name(name, "feature table")
        if not isinstance(config, dict):
            raise DataError(f"{where} must be a table with 'key'")
        unknown = set(config) - {"key", "max_age"}
        if unknown:
            raise DataError(f"{where}: unknown keys {sorted(unknown)}; keys are key, max_age")
        key = check_name(config.get("key"), f"{where} key column")
        max_age = config.get("max_age")
        if max_age is not None:
            parse_duration(max_age, f"{where} max_age")
        return cls(name, key, max_age)


@dataclass(frozen=True)
class Declarations:
    """A bundle's event and feature tables, by name."""

    events: dict[str, EventTable] = field(default_factory=dict)
    features: dict[str, FeatureTable] = field(default_factory=dict)

    @classmethod
    def parse(cls, events: Any, features: Any) -> Declarations:
        """From bundle.toml's tables or the manifest's (the same shape, the manifest's normalised)."""
        for value, what in ((events, "events"), (features, "features")):
            if not isinstance(value, dict):
                raise DataError(f"[{what}] must be a table of tables, one per {what[:-1]} table")
        return cls(
            {name: EventTable.parse(name, config) for name, config in events.items()},
            {name: FeatureTable.parse(name, config) for name, config in features.items()},
        )

    def to_manifest(self) -> dict[str, Any]:
        """The manifest fields: none at all for a bundle that declares no tables (its manifest stays as it was)."""
        data: dict[str, Any] = {}
        if self.events:
            data["events"] = {n: t.to_manifest() for n, t in self.events.items()}
        if self.features:
            data["features"] = {n: t.to_manifest() for n, t in self.features.items()}
        return data

