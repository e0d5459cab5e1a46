"""Devices' telemetry reports and remote log lines under --data, and the queries over them.

    store = TelemetryStore(Path("data"))                  # data/telemetry.sqlite3
    store.ingest(report)                                  # True, or False for an id seen before
    store.version_stats("digits", "1.0.1", since_ms=...)  # VersionStats: devices, error rate, p95 ...
    store.summary("digits")                               # {"versions": {version: stats.to_dict()}}
    store.timeline("digits", hours=48)                    # per hour and version
    logs = LogStore(Path("data"))                         # data/logs.sqlite3
    logs.add(upload); logs.recent("digits", limit=200)

Reports are checked by the API (telemetry_api.py) before they come here. A report is not kept
as sent: its numbers are added into per-minute rows (the minute the server received it), so
ingesting costs a few upserts whatever the fleet's size, and a query reads a version's minutes,
not its reports. Latency histograms keep their buckets as rows (`buckets`), so merging the
reports of a period is a SUM ... GROUP BY idx. A report id is recorded in the same transaction
as its numbers: a report sent again (the device never heard the answer) counts once.
`compact()` (hourly, from the API) folds minutes older than two hours into hours and hours
older than seven days into days, so a query over weeks reads hundreds of rows per series, not
tens of thousands.

On SQLite, unlike the server's other stores (a connection per operation), each thread keeps
one connection to each file, and commits without waiting for the disk (synchronous=NORMAL in WAL
mode). Closing the last connection to a WAL file checkpoints it and syncs, and a sync commit
waits for the disk: together some 20 ms a report on this machine's disk, against well under a
millisecond so. A power cut may lose the last reports acknowledged, never the file's consistency:
a minute of statistics, for an ingest tens of times faster. Other processes (the command line)
still read and write the same files safely.

On PostgreSQL many server instances ingest into the same tables at once. Every number is added
by an upsert (`SET n = timings.n + excluded.n`), which PostgreSQL applies atomically whichever
instance sends it; a report id is claimed by its primary key in the report's own transaction, so
the same report reaching two instances at once counts once (the second waits for the first to
commit, then finds the id taken). A report's rows are written in one order (by table, then key),
so two reports touching the same rows wait for one another instead of deadlocking. Folding and
forgetting (compact) run on one instance at a time (an advisory lock; the others skip), and the
queries read one snapshot (REPEATABLE READ), as SQLite's read transaction gives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..device.errors import BundleError
from ..device.manifest import Manifest
from . import histogram
from .registry import Registry
from .storage import Connection, Database, Migration, Storage
from .version_stats import VersionStats

__all__ = ["LOGS_FILE", "LOG_MIGRATIONS", "LogStore", "MIGRATIONS", "TELEMETRY_FILE", "TelemetryStore"]

TELEMETRY_FILE = "telemetry.sqlite3"
LOGS_FILE = "logs.sqlite3"
_MINUTE = 60_000  # ms
_KEEP_LOG_LINES = 100_000  # per bundle: older lines are dropped as new ones come
_CACHED_MANIFESTS = 256
_CACHED_SERIES = 100_000
_HOUR, _DAY = 60, 1440  # in slots (minutes)
# Old minutes are folded into their hour, old hours into their day (compact()), so that a query
# over a long period reads a few rows per series: only a fresh rollout needs the minute, the
# dashboard's 48 hours the hour. A query's `since_ms` is rounded down the same way (_since_slot),
# so an answer is the same before and after a folding.
_MINUTES_FOR_MS = 2 * 3_600_000
_HOURS_FOR_MS = 7 * 24 * 3_600_000
# How each table's rows add up when folded: its key columns after (series, slot), and its sums.
_FOLDS = (
    ("installs", ("installation",), ()),
    ("timings", (), ("calls", "errors", "on_device", "on_server", "n", "total", "low", "high")),
    ("buckets", ("idx",), ("count",)),
    ("errors", ("code",), ("count",)),
    ("signals", ("bin",), ("count",)),
)

# A series is what one row of numbers is about: (bundle, version, kind, name), with kind
# "function", "model", "startup" (name: open, python, models), "signal", or "version" (name "":
# the installations). The other tables key on its integer id, so an upsert compares integers.
# slot: the minute (ms // 60000) the server received the report. calls of a model are its runs.
MIGRATIONS = (
    Migration(1, sqlite="""
CREATE TABLE IF NOT EXISTS reports (id TEXT PRIMARY KEY, received INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, bundle TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    UNIQUE (bundle, version, kind, name)
);
CREATE TABLE IF NOT EXISTS installs (
    series INTEGER NOT NULL, slot INTEGER NOT NULL, installation TEXT NOT NULL,
    PRIMARY KEY (series, slot, installation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timings (
    series INTEGER NOT NULL, slot INTEGER NOT NULL,
    calls INTEGER NOT NULL, errors INTEGER NOT NULL, on_device INTEGER NOT NULL, on_server INTEGER NOT NULL,
    n INTEGER NOT NULL, total REAL NOT NULL, low REAL, high REAL,
    PRIMARY KEY (series, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
    series INTEGER NOT NULL, slot INTEGER NOT NULL, idx INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series, slot, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS errors (
    series INTEGER NOT NULL, slot INTEGER NOT NULL, code TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series, slot, code)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signals (
    series INTEGER NOT NULL, slot INTEGER NOT NULL, bin INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series, slot, bin)
) WITHOUT ROWID;
""", postgresql="""
CREATE TABLE IF NOT EXISTS reports (id TEXT PRIMARY KEY, received BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id BIGSERIAL PRIMARY KEY, bundle TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    UNIQUE (bundle, version, kind, name)
);
CREATE TABLE IF NOT EXISTS installs (
    series BIGINT NOT NULL, slot BIGINT NOT NULL, installation TEXT NOT NULL,
    PRIMARY KEY (series, slot, installation)
);
CREATE TABLE IF NOT EXISTS timings (
    series BIGINT NOT NULL, slot BIGINT NOT NULL,
    calls BIGINT NOT NULL, errors BIGINT NOT NULL, on_device BIGINT NOT NULL, on_server BIGINT NOT NULL,
    n BIGINT NOT NULL, total DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION, high DOUBLE PRECISION,
    PRIMARY KEY (series, slot)
);
CREATE TABLE IF NOT EXISTS buckets (
    series BIGINT NOT NULL, slot BIGINT NOT NULL, idx INTEGER NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (series, slot, idx)
);
CREATE TABLE IF NOT EXISTS errors (
    series BIGINT NOT NULL, slot BIGINT NOT NULL, code TEXT NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (series, slot, code)
);
CREATE TABLE IF NOT EXISTS signals (
    series BIGINT NOT NULL, slot BIGINT NOT NULL, bin INTEGER NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (series, slot, bin)
);
"""),
)
# The lock that lets one instance at a time compact (PostgreSQL): folding twice at once would add
# the same minutes into their hour twice.
_COMPACT_LOCK = "waystation.telemetry.compact"


def _merge_of(table: str, column: str) -> str:
    """The upsert's merge of `column`: sums add up, low keeps the least and high the greatest (NULL: none).

    Written with CASE, as both engines read it: SQLite has no LEAST/GREATEST, PostgreSQL no scalar min/max.
    The stored row's column is qualified by its table, as PostgreSQL requires beside `excluded`."""
    if column in ("low", "high"):
        old, new, beyond = f"{table}.{column}", f"excluded.{column}", "<" if column == "low" else ">"
        return f"{column} = CASE WHEN {old} IS NULL OR {new} {beyond} {old} THEN {new} ELSE {old} END"
    return f"{column} = {table}.{column} + excluded.{column}"


def _upsert(table: str, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    """Add one row's numbers into the row of its key (made if missing)."""
    columns = ("series", "slot", *keys, *sums)
    conflict = "NOTHING" if not sums else "UPDATE SET " + ", ".join(_merge_of(table, c) for c in sums)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(('series', 'slot', *keys))}) DO {conflict}")


_UPSERTS = {table: _upsert(table, keys, sums) for table, keys, sums in _FOLDS}
# The series of one bundle version and kind, joined by the queries: s.bundle, s.version, s.kind.
_OF = "JOIN series s ON s.id = t.series WHERE s.bundle = ? AND s.version = ? AND s.kind = ? AND t.slot >= ?"
_OF_BUNDLE = "JOIN series s ON s.id = t.series WHERE s.bundle = ? AND s.kind = ? AND t.slot >= ?"
_Series = tuple[str, str, str, str]


class _Rows:
    """A report as the rows it adds, each keyed by its series (resolved to ids in the transaction)."""

    def __init__(self, report: dict[str, Any], slot: int) -> None:
        self.installs: list[tuple[Any, ...]] = []
        self.timings: list[tuple[Any, ...]] = []
        self.buckets: list[tuple[Any, ...]] = []
        self.errors: list[tuple[Any, ...]] = []
        self.signals: list[tuple[Any, ...]] = []
        for entry in report["bundles"]:
            b, v = entry["bundle"], entry["version"]
            self.installs.append(((b, v, "version", ""), slot, report["installation"]))
            for name, f in entry.get("functions", {}).items():
                ran = f.get("ranOn", {})
                errors = f.get("errors", {})
                series = (b, v, "function", name)
                self._timing(series, slot, f["calls"], sum(errors.values()), f["latency"],
                             ran.get("device", 0), ran.get("server", 0))
                self.errors.extend((series, slot, code, count) for code, count in errors.items() if count)
            for name, m in entry.get("models", {}).items():
                self._timing((b, v, "model", name), slot, m["runs"], 0, m["latency"])
            for phase, h in entry.get("startup", {}).items():
                self._timing((b, v, "startup", phase), slot, h["n"], 0, h)
            for name, sig in entry.get("signals", {}).items():
                self.signals.extend(((b, v, "signal", name), slot, i, c) for i, c in enumerate(sig["counts"]) if c)

    def _timing(self, series: _Series, slot: int, calls: int, errors: int, h: dict[str, Any],
                on_device: int = 0, on_server: int = 0) -> None:
        self.timings.append((series, slot, calls, errors, on_device, on_server, h["n"], h["sum"], h.get("min"),
                             h.get("max")))
        self.buckets.extend((series, slot, int(i), c) for i, c in h["b"].items() if c)

    def tables(self) -> Iterator[tuple[str, int, list[tuple[Any, ...]]]]:
        """(table, columns of its key, rows), in the order they are written."""
        for (table, keys, _), rows in zip(_FOLDS, (self.installs, self.timings, self.buckets, self.errors,
                                                   self.signals), strict=True):
            yield table, 2 + len(keys), rows

    def series(self) -> list[_Series]:
        """Every series the report adds to, sorted."""
        return sorted({row[0] for _, _, rows in self.tables() for row in rows})


class TelemetryStore:
    """The telemetry of one data folder. Blocking: call from a thread pool on the server."""

    def __init__(self, data: str | Path | Storage) -> None:
        self.storage = Storage.at(data)
        self.data = self.storage.data
        self.db = self.storage.database("telemetry", MIGRATIONS, per_thread=True, synchronous="NORMAL")
        self._references: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
        self._series: dict[_Series, int] = {}
        self._registry: Registry | None = None

    def ingest(self, report: dict[str, Any], received_ms: int | None = None) -> bool:
        """Add a checked report's numbers; False (and nothing added) if its id was ingested before."""
        received = int(time.time() * 1000) if received_ms is None else received_ms
        rows = _Rows(report, received // _MINUTE)
        made: dict[_Series, int] = {}
        with self.db.transaction() as tx:
            # The id first: on PostgreSQL a second instance ingesting the same report waits here for
            # the first one's commit, then finds the id taken, having written nothing.
            if tx.execute("INSERT INTO reports VALUES (?, ?) ON CONFLICT DO NOTHING",
                          (report["id"], received)).rowcount == 0:
                return False
            ids = {series: self._series_id(tx, series, made) for series in rows.series()}
            ordered = tx.engine == "postgresql"  # SQLite has one writer at a time: no order needed
            for table, key_width, found in rows.tables():
                if found:
                    values = [(ids[row[0]], *row[1:]) for row in found]
                    if ordered:
                        values.sort(key=lambda row: row[:key_width])
                    tx.executemany(_UPSERTS[table], values)
        # Remembered once committed: an id from a transaction rolled back would point at nothing.
        if len(self._series) + len(made) > _CACHED_SERIES:
            self._series.clear()
        self._series.update(made)
        return True

    def _series_id(self, tx: Connection, series: _Series, made: dict[_Series, int]) -> int:
        """The id of a series, made on first use (ids never change, so they are remembered)."""
        found = self._series.get(series) or made.get(series)
        if found is None:
            tx.execute("INSERT INTO series (bundle, version, kind, name) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       series)
            found = made[series] = int(tx.execute(
                "SELECT id FROM series WHERE bundle = ? AND version = ? AND kind = ? AND name = ?", series).fetchone()[0])
        return found

    def version_stats(self, bundle: str, version: str, since_ms: int | None = None, *,
                      now_ms: int | None = None) -> VersionStats:
        """What the reports about `version` received since `since_ms` add up to: from its minute on, or from
        the start of its hour if it is more than two hours ago, of its day if more than seven days."""
        slot = _since_slot(since_ms, int(time.time() * 1000) if now_ms is None else now_ms)
        with _snapshot(self.db) as tx:
            devices = int(tx.execute(f"SELECT COUNT(DISTINCT installation) FROM installs t {_OF}",
                                     (bundle, version, "version", slot)).fetchone()[0])
            of_functions = (bundle, version, "function", slot)
            # PostgreSQL sums BIGINT columns as NUMERIC (Decimal): made ints again here.
            sums = [(name, int(calls), int(errors), int(n), low, high) for name, calls, errors, n, low, high in tx.execute(
                f"SELECT s.name, SUM(calls), SUM(errors), SUM(n), MIN(low), MAX(high) FROM timings t {_OF} "
                "GROUP BY s.name", of_functions)]
            counts = [(name, idx, int(count)) for name, idx, count in tx.execute(
                f"SELECT s.name, idx, SUM(count) FROM buckets t {_OF} GROUP BY s.name, idx", of_functions)]
            signal_counts = [(name, bin_, int(count)) for name, bin_, count in tx.execute(
                f"SELECT s.name, bin, SUM(count) FROM signals t {_OF} GROUP BY s.name, bin",
                (bundle, version, "signal", slot))]
        by_name: dict[str, list[tuple[int, int]]] = {}
        for name, idx, count in counts:
            by_name.setdefault(name, []).append((idx, count))
        functions = {name: _function(calls, errors, n, low, high, by_name.get(name, []))
                     for name, calls, errors, n, low, high in sums}
        calls = sum(row[1] for row in sums)
        errors = sum(row[2] for row in sums)
        whole = _Latency([row[3:] for row in sums], [pair for pairs in by_name.values() for pair in pairs])
        return VersionStats(devices=devices, calls=calls, errors=errors, p50=whole.q(0.5), p95=whole.q(0.95),
                            p99=whole.q(0.99), functions=functions,
                            signals=self._signals(bundle, version, signal_counts))

    def compact(self, now_ms: int | None = None, keep_days: float = 90) -> dict[str, int]:
        """Fold minutes older than two hours into their hour and hours older than seven days into their day;
        forget rows and report ids older than `keep_days`. Queries answer the same before and after.

        {"folded": rows folded away, "forgotten": rows forgotten}."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        keep_from = int(now - keep_days * 24 * 3_600_000)
        folds = ((_HOUR, (now - _MINUTES_FOR_MS) // _MINUTE // _HOUR * _HOUR),
                 (_DAY, (now - _HOURS_FOR_MS) // _MINUTE // _DAY * _DAY))
        folded = forgotten = 0
        with self.db.transaction() as tx:
            if tx.engine == "postgresql" and not tx.execute("SELECT pg_try_advisory_xact_lock(hashtext(?))",
                                                            (_COMPACT_LOCK,)).fetchone()[0]:
                return {"folded": 0, "forgotten": 0}  # another instance is compacting now
            forgotten += tx.execute("DELETE FROM reports WHERE received < ?", (keep_from,)).rowcount
            for table, keys, sums in _FOLDS:
                forgotten += tx.execute(f"DELETE FROM {table} WHERE slot < ?", (keep_from // _MINUTE,)).rowcount
                for unit, before in folds:
                    tx.execute(_fold_sql(table, keys, sums, unit), (before,))
                    folded += tx.execute(f"DELETE FROM {table} WHERE slot < ? AND slot % {unit} != 0",
                                         (before,)).rowcount
        return {"folded": folded, "forgotten": forgotten}

    def summary(self, bundle: str) -> dict[str, Any]:
        """{"versions": {version: its VersionStats.to_dict()}} for every version of `bundle` that reported."""
        with self.db.transaction() as tx:
            versions = [row[0] for row in tx.execute(
                "SELECT version FROM series s WHERE bundle = ? AND kind = 'version' "
                "AND EXISTS (SELECT 1 FROM installs WHERE series = s.id)", (bundle,))]
        return {"versions": {v: self.version_stats(bundle, v).to_dict() for v in sorted(versions, key=_release_key)}}

    def timeline(self, bundle: str, hours: int = 48, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Per hour (UTC, of receipt) and version over the last `hours`: devices, calls, errors, p95 (ms).

        Oldest hour first; an hour without reports of a version has no entry."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        first_hour = now // (60 * _MINUTE) - hours + 1
        slot = first_hour * 60
        with _snapshot(self.db) as tx:
            devices = [(int(hour), version, int(n)) for hour, version, n in tx.execute(
                f"SELECT slot / 60, s.version, COUNT(DISTINCT installation) FROM installs t {_OF_BUNDLE} "
                "GROUP BY 1, 2", (bundle, "version", slot))]
            sums = [(int(hour), version, int(calls), int(errors), int(n), low, high)
                    for hour, version, calls, errors, n, low, high in tx.execute(
                        f"SELECT slot / 60, s.version, SUM(calls), SUM(errors), SUM(n), MIN(low), MAX(high) "
                        f"FROM timings t {_OF_BUNDLE} GROUP BY 1, 2", (bundle, "function", slot))]
            counts = [(int(hour), version, idx, int(count)) for hour, version, idx, count in tx.execute(
                f"SELECT slot / 60, s.version, idx, SUM(count) FROM buckets t {_OF_BUNDLE} "
                "GROUP BY 1, 2, 3", (bundle, "function", slot))]
        buckets: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for hour, version, idx, count in counts:
            buckets.setdefault((hour, version), []).append((idx, count))
        numbers = {(hour, version): row for hour, version, *row in sums}
        out = []
        for hour, version, installs in sorted(devices, key=lambda r: (r[0], _release_key(r[1]))):
            calls, errors, n, low, high = numbers.get((hour, version), (0, 0, 0, None, None))
            p95 = _Latency([(n, low, high)], buckets.get((hour, version), [])).q(0.95)
            out.append({"hour": _hour_text(hour), "version": version, "devices": installs, "calls": calls,
                        "errors": errors, "p95": p95})
        return out

    def _signals(self, bundle: str, version: str, rows: Iterable[tuple[str, int, int]]) -> dict[str, dict[str, Any]]:
        references = self._reference(bundle, version)
        found: dict[str, dict[int, int]] = {}
        for name, bin_, count in rows:
            found.setdefault(name, {})[bin_] = count
        out = {}
        for name, bins in sorted(found.items()):
            reference = references.get(name)
            width = len(reference) if reference else max(bins) + 1
            counts = [bins.get(i, 0) for i in range(width)]
            score = histogram.psi(counts, reference) if reference and len(reference) == width else None
            out[name] = {"n": sum(counts), "counts": counts, "psi": score}
        return out

    def _reference(self, bundle: str, version: str) -> dict[str, tuple[int, ...]]:
        """{signal: reference counts} from the version's manifest in the registry beside this store."""
        if (bundle, version) not in self._references:  # a published manifest never changes: read once
            if self._registry is None:
                self._registry = Registry(self.storage)
            raw = self._registry.manifest(bundle, version)
            try:
                signals = Manifest.from_json(raw).telemetry.signals if raw is not None else {}
            except BundleError:
                signals = {}
            if len(self._references) >= _CACHED_MANIFESTS:
                self._references.clear()
            self._references[(bundle, version)] = {k: s.reference for k, s in signals.items()}
        return self._references[(bundle, version)]


def _fold_sql(table: str, keys: tuple[str, ...], sums: tuple[str, ...], unit: int) -> str:
    """Add a table's rows before a slot into the rows at the start of their `unit` (an hour, a day)."""
    key = ", ".join(("series", "slot", *keys))
    start = f"slot - slot % {unit}"
    picked = ", ".join(("series", start, *keys, *(_fold_of(c) for c in sums)))
    conflict = "NOTHING" if not sums else "UPDATE SET " + ", ".join(_merge_of(table, c) for c in sums)
    return (f"INSERT INTO {table} ({key}{''.join(', ' + c for c in sums)}) SELECT {picked} FROM {table} "
            f"WHERE slot < ? AND slot % {unit} != 0 GROUP BY series, {start}{''.join(', ' + k for k in keys)} "
            f"ON CONFLICT ({key}) DO {conflict}")


def _since_slot(since_ms: int | None, now_ms: int) -> int:
    """The first slot a query from `since_ms` reads: its minute, or the start of its hour or day once those
    are folded (compact), so that an answer does not change with a folding."""
    if since_ms is None:
        return -(1 << 62)
    slot = since_ms // _MINUTE
    age = now_ms - since_ms
    if age > _HOURS_FOR_MS:
        return slot - slot % _DAY
    if age > _MINUTES_FOR_MS:
        return slot - slot % _HOUR
    return slot


def _fold_of(column: str) -> str:
    return {"low": "MIN(low)", "high": "MAX(high)"}.get(column, f"SUM({column})")


class _Latency:
    """The merged histogram of some timings rows: (n, low, high) sums and (idx, count) buckets."""

    def __init__(self, sums: Iterable[tuple[int, float | None, float | None]], buckets: Iterable[tuple[int, int]]) -> None:
        rows = list(sums)
        self.n = sum(row[0] or 0 for row in rows)
        lows = [row[1] for row in rows if row[1] is not None]
        highs = [row[2] for row in rows if row[2] is not None]
        self.low, self.high = (min(lows) if lows else None), (max(highs) if highs else None)
        merged: dict[int, int] = {}
        for idx, count in buckets:
            merged[idx] = merged.get(idx, 0) + count
        self.buckets = merged

    def q(self, q: float) -> float | None:
        found = histogram.quantile_of(self.n, self.low, self.high, self.buckets.items(), q)
        return None if found is None else round(found, 4)


def _function(calls: int, errors: int, n: int, low: float | None, high: float | None,
              buckets: list[tuple[int, int]]) -> dict[str, Any]:
    latency = _Latency([(n, low, high)], buckets)
    return {"calls": calls, "errors": errors, "error_rate": round(errors / calls, 4) if calls else 0.0,
            "p50": latency.q(0.5), "p95": latency.q(0.95), "p99": latency.q(0.99)}


def _hour_text(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:00Z")


def _release_key(version: str) -> tuple[Any, ...]:
    """Semantic versions in release order (1.0.10 after 1.0.9); anything else after them, by text."""
    core = version.split("-")[0].split("+")[0]
    parts = core.split(".")
    if all(p.isdigit() for p in parts):
        return (0, *(int(p) for p in parts), version)
    return (1, version)


LOG_MIGRATIONS = (
    Migration(1, sqlite="""
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, received INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lines (
    seq INTEGER PRIMARY KEY, bundle TEXT NOT NULL, received INTEGER NOT NULL, version TEXT NOT NULL,
    t INTEGER NOT NULL, level TEXT NOT NULL, logger TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_bundle ON lines (bundle, seq);
""", postgresql="""
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, received BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS lines (
    seq BIGSERIAL PRIMARY KEY, bundle TEXT NOT NULL, received BIGINT NOT NULL, version TEXT NOT NULL,
    t BIGINT NOT NULL, level TEXT NOT NULL, logger TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_by_bundle ON lines (bundle, seq);
"""),
)


class LogStore:
    """Remote log lines of one data folder (data/logs.sqlite3), the newest _KEEP_LOG_LINES per bundle.

    On PostgreSQL, instances adding lines of one bundle at once each trim to the newest `keep` they
    see: the bound holds within the lines being added meanwhile."""

    def __init__(self, data: str | Path | Storage, keep: int = _KEEP_LOG_LINES) -> None:
        self.storage = Storage.at(data)
        self.keep = keep
        self.db = self.storage.database("logs", LOG_MIGRATIONS, per_thread=True, synchronous="NORMAL")

    def add(self, upload: dict[str, Any], received_ms: int | None = None) -> bool:
        """Store a checked upload's lines; False (nothing stored) if its id was stored before."""
        received = int(time.time() * 1000) if received_ms is None else received_ms
        bundle, version = upload["bundle"], upload["version"]
        rows = [(bundle, received, version, line["t"], line["level"], _text(line["logger"]), _text(line["message"]))
                for line in upload["lines"]]
        with self.db.transaction() as tx:
            if tx.execute("INSERT INTO uploads VALUES (?, ?) ON CONFLICT DO NOTHING",
                          (upload["id"], received)).rowcount == 0:
                return False
            if rows:
                tx.executemany("INSERT INTO lines (bundle, received, version, t, level, logger, message) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            tx.execute("DELETE FROM lines WHERE bundle = ? AND seq <= (SELECT seq FROM lines WHERE bundle = ? "
                       "ORDER BY seq DESC LIMIT 1 OFFSET ?)", (bundle, bundle, self.keep))
        return True

    def recent(self, bundle: str, limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` lines of `bundle`, newest first: {received, version, t, level, logger, message}."""
        with self.db.transaction() as tx:
            rows = tx.execute("SELECT received, version, t, level, logger, message FROM lines WHERE bundle = ? "
                              "ORDER BY seq DESC LIMIT ?", (bundle, limit)).fetchall()
        fields = ("received", "version", "t", "level", "logger", "message")
        return [dict(zip(fields, row, strict=True)) for row in rows]


def _text(value: str) -> str:
    """A device's text as both engines store it: PostgreSQL's text holds no NUL character."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


@contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """A read transaction in which every query sees the same reports (on PostgreSQL, REPEATABLE READ:
    its default gives each statement a snapshot of its own)."""
    with db.transaction() as tx:
        if tx.engine == "postgresql":
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield tx
