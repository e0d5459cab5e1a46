"""TelemetryStore and LogStore on real SQLite or PostgreSQL (--engine): ingest once per id, per-version
numbers, timeline; on PostgreSQL, two stores (two server instances) ingesting into one database at once."""

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.server import storage
from waystation.server.histogram import psi
from waystation.server.registry import Registry
from waystation.server.telemetry_store import LogStore, TelemetryStore

from telemetry_reports import EDGES, REFERENCE, installation, report, telemetry_bundle

HOUR = 3_600_000
T0 = 1_796_000_000_000 - 1_796_000_000_000 % HOUR  # a whole hour (ms)


def hour(ms):
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:00Z")


def close(got, want, rel=0.02):
    return abs(got - want) <= rel * want


@pytest.fixture
def store(tmp_path) -> TelemetryStore:
    return TelemetryStore(tmp_path / "data")


def test_a_report_id_counts_once(store):
    sent = report("digits", "1.0.0", functions={"classify": ([5.0, 6.0], {"model-error": 1})})
    assert store.ingest(sent) is True
    assert store.ingest(sent) is False
    assert store.ingest(dict(sent)) is False
    stats = store.version_stats("digits", "1.0.0")
    assert (stats.devices, stats.calls, stats.errors) == (1, 2, 1)
    assert stats.error_rate == 0.5


def test_percentiles_over_merged_reports_match_the_samples(store):
    rng = random.Random(3)
    every, per_function = [], {"classify": [], "embed": []}
    for _ in range(60):
        functions = {}
        for name in per_function:
            samples = [rng.lognormvariate(2 if name == "classify" else 3.5, 0.6) for _ in range(rng.randint(1, 40))]
            per_function[name] += samples
            every += samples
            functions[name] = (samples, {})
        store.ingest(report("digits", "1.0.0", functions=functions))
    stats = store.version_stats("digits", "1.0.0")
    assert stats.calls == len(every) and stats.devices == 60
    for q, got in ((0.5, stats.p50), (0.95, stats.p95), (0.99, stats.p99)):
        assert close(got, float(np.quantile(every, q, method="lower"))), (q, got)
    for name, samples in per_function.items():
        f = stats.functions[name]
        assert f["calls"] == len(samples) and f["errors"] == 0 and f["error_rate"] == 0.0
        assert close(f["p95"], float(np.quantile(samples, 0.95, method="lower")))


def test_devices_are_distinct_installations_and_versions_apart(store):
    devices = [installation() for _ in range(5)]
    for i in range(20):
        store.ingest(report("digits", "1.0.0", device=devices[i % 5], functions={"f": ([1.0], {})}))
    store.ingest(report("digits", "1.0.1", device=devices[0], functions={"f": ([1.0, 2.0], {"x-err": 2})}))
    store.ingest(report("other", "1.0.0", functions={"f": ([1.0], {})}))
    assert store.version_stats("digits", "1.0.0").devices == 5
    new = store.version_stats("digits", "1.0.1")
    assert (new.devices, new.calls, new.errors, new.error_rate) == (1, 2, 2, 1.0)
    assert list(store.summary("digits")["versions"]) == ["1.0.0", "1.0.1"]
    assert store.version_stats("digits", "9.9.9").calls == 0
    assert store.version_stats("digits", "9.9.9").p95 is None


def test_since_counts_only_reports_received_from_that_minute(store):
    store.ingest(report("digits", "1.0.0", functions={"f": ([1.0] * 3, {})}), received_ms=T0)
    store.ingest(report("digits", "1.0.0", functions={"f": ([1.0] * 4, {})}), received_ms=T0 + 10 * 60_000)
    now = T0 + 20 * 60_000
    assert store.version_stats("digits", "1.0.0").calls == 7
    assert store.version_stats("digits", "1.0.0", since_ms=T0 + 5 * 60_000, now_ms=now).calls == 4
    assert store.version_stats("digits", "1.0.0", since_ms=T0 + 11 * 60_000, now_ms=now).calls == 0
    # More than two hours ago a since counts from its hour, more than seven days ago from its day:
    # what compact() folds minutes and hours into.
    assert store.version_stats("digits", "1.0.0", since_ms=T0 + 11 * 60_000, now_ms=now + 3 * HOUR).calls == 7
    assert store.version_stats("digits", "1.0.0", since_ms=T0 + HOUR, now_ms=now + 8 * 24 * HOUR).calls == 7


def test_timeline_per_hour_and_version(store):
    store.ingest(report("digits", "1.0.0", functions={"f": ([10.0] * 9, {"e": 1})}), received_ms=T0 - HOUR)
    store.ingest(report("digits", "1.0.0", functions={"f": ([20.0] * 5, {})}), received_ms=T0 + 5)
    store.ingest(report("digits", "1.0.1", functions={"f": ([40.0] * 2, {})}), received_ms=T0 + 7)
    store.ingest(report("digits", "1.0.1", functions={"f": ([40.0] * 2, {})}), received_ms=T0 - 50 * HOUR)  # too old
    line = store.timeline("digits", hours=48, now_ms=T0 + 30 * 60_000)
    assert [(e["hour"], e["version"], e["devices"], e["calls"], e["errors"]) for e in line] == [
        (hour(T0 - HOUR), "1.0.0", 1, 9, 1), (hour(T0), "1.0.0", 1, 5, 0), (hour(T0), "1.0.1", 1, 2, 0)]
    assert line[0]["hour"].endswith(":00Z")
    assert close(line[1]["p95"], 20.0) and close(line[2]["p95"], 40.0)


def test_models_startup_and_signals_are_stored_and_psi_uses_the_manifest_reference(tmp_path):
    data = tmp_path / "data"
    Registry(data).publish(telemetry_bundle(tmp_path, Ed25519PrivateKey.generate(), "digits", "1.0.0"), "stable")
    store = TelemetryStore(data)
    shifted = [40, 30, 20, 5, 3, 2]
    for _ in range(3):
        store.ingest(report("digits", "1.0.0", functions={"f": ([1.0], {})}, models={"classifier": [0.5, 0.7]},
                            startup={"open": [300.0], "python": [900.0]}, signals={"top_score": shifted}))
    signal = store.version_stats("digits", "1.0.0").signals["top_score"]
    assert signal["counts"] == [3 * c for c in shifted] and signal["n"] == 300
    assert signal["psi"] == psi(signal["counts"], REFERENCE) and signal["psi"] > 1
    assert len(signal["counts"]) == len(EDGES) + 1
    with store.db.transaction() as tx:
        kinds = dict(tx.execute("SELECT s.kind, SUM(calls) FROM timings t JOIN series s ON s.id = t.series "
                                  "GROUP BY s.kind").fetchall())
    assert {kind: int(calls) for kind, calls in kinds.items()} == {"function": 3, "model": 6, "startup": 6}
    # Without a manifest (a bundle this registry does not hold) the PSI is unknown, the counts kept.
    store.ingest(report("elsewhere", "2.0.0", signals={"s": [1, 2]}))
    assert store.version_stats("elsewhere", "2.0.0").signals == {"s": {"n": 3, "counts": [1, 2], "psi": None}}


def test_log_store_dedupes_lists_newest_first_and_keeps_a_bounded_number(tmp_path):
    logs = LogStore(tmp_path / "data", keep=5)

    def upload(n, bundle="digits"):
        return {"schema": 1, "id": str(uuid.uuid4()), "bundle": bundle, "version": "1.0.0",
                "lines": [{"t": T0 + i, "level": "info", "logger": "waystation.digits", "message": f"line {n}.{i}"}
                          for i in range(3)]}

    first = upload(1)
    assert logs.add(first, received_ms=T0) is True
    assert logs.add(first, received_ms=T0 + 1) is False
    assert [r["message"] for r in logs.recent("digits")] == ["line 1.2", "line 1.1", "line 1.0"]
    assert logs.recent("digits")[0] == {"received": T0, "version": "1.0.0", "t": T0 + 2, "level": "info",
                                        "logger": "waystation.digits", "message": "line 1.2"}
    logs.add(upload(2))
    logs.add(upload(3, bundle="other"))
    assert [r["message"] for r in logs.recent("digits")] == ["line 2.2", "line 2.1", "line 2.0", "line 1.2", "line 1.1"]
    assert len(logs.recent("digits", limit=2)) == 2
    assert len(logs.recent("other")) == 3


def test_compact_folds_old_minutes_and_hours_and_answers_the_same(store):
    rng = random.Random(4)
    now = T0 + 30 * 60_000
    devices = [installation() for _ in range(8)]
    for _ in range(400):
        at = now - rng.randint(0, 10 * 24 * 60) * 60_000  # any minute of the last ten days
        store.ingest(report("digits", rng.choice(["1.0.0", "1.0.1"]), device=rng.choice(devices),
                            functions={"f": ([rng.lognormvariate(2, 0.5) for _ in range(5)], {"e": rng.randint(0, 1)})},
                            signals={"s": [rng.randint(0, 3), rng.randint(0, 3)]}), received_ms=at)
    sinces = [now - 30 * 60_000, now - 5 * HOUR + 17 * 60_000, now - 8 * 24 * HOUR + 5 * HOUR + 3 * 60_000, None]

    def answers():
        return (store.summary("digits"), store.timeline("digits", hours=6 * 24, now_ms=now),
                [store.version_stats("digits", "1.0.0", since_ms=s, now_ms=now) for s in sinces])

    def rows():
        with store.db.transaction() as tx:
            return sum(tx.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("installs", "timings", "buckets"))

    before, many = answers(), rows()
    done = store.compact(now_ms=now)
    assert done["folded"] > 0 and done["forgotten"] == 0
    assert rows() < many
    assert answers() == before
    assert store.compact(now_ms=now)["folded"] == 0  # nothing left to fold
    # Past keep_days everything goes, report ids included: the same report then counts again.
    gone = store.compact(now_ms=now + 20 * 24 * HOUR, keep_days=1)
    assert gone["forgotten"] > 0
    assert store.summary("digits") == {"versions": {}}


def test_a_report_that_fails_midway_stores_nothing_and_the_next_one_counts(store):
    broken = report("digits", "2.0.0", functions={"g": ([1.0, 2.0], {})})
    broken["bundles"][0]["functions"]["g"]["latency"]["sum"] = None  # NOT NULL: SQLite refuses the row
    with pytest.raises(storage.IntegrityError):
        store.ingest(broken)
    assert store.summary("digits") == {"versions": {}}
    broken["bundles"][0]["functions"]["g"]["latency"]["sum"] = 3.0  # the same id, now whole
    assert store.ingest(broken) is True
    stats = store.version_stats("digits", "2.0.0")
    assert (stats.devices, stats.calls, stats.functions["g"]["calls"]) == (1, 2, 2)


def test_two_stores_on_one_database_count_a_report_once_and_add_up_concurrent_reports(tmp_path):
    """Two TelemetryStore objects over one data folder are two server instances over one database
    (PostgreSQL: two stores, each its own series cache and transactions, on one database; SQLite:
    two writers on one file). Each report reaches both at the same moment (a device's retry landing
    on another instance): it must count once. Then both ingest different reports into the same
    rows at once, half of them naming the functions in the other order: the sums must be exact,
    with no report lost to a deadlock or an update overwritten."""
    data = tmp_path / "data"
    stores = [TelemetryStore(data), TelemetryStore(data)]
    devices = [installation() for _ in range(7)]
    rng = random.Random(9)
    names = [f"fn{k:02}" for k in range(12)]
    calls = {name: k % 3 + 1 for k, name in enumerate(names)}

    def a_report(i):
        order = list(names)
        random.Random(i).shuffle(order)  # the same rows, written in another order by each report
        functions = {name: ([20.0] * calls[name], {"e": 1} if name == "fn00" else {}) for name in order}
        return report("digits", "1.0.0", device=devices[i % 7], functions=functions, signals={"s": [1, 2, 3]})

    start = threading.Barrier(2)

    def ingest(store, reports):
        stored = []
        try:
            for sent in reports:
                start.wait()
                stored.append(store.ingest(sent, received_ms=T0))
        except BaseException:
            start.abort()  # the other thread must not wait for this one at the barrier
            raise
        return stored

    same = [a_report(i) for i in range(40)]
    with ThreadPoolExecutor(2) as pool:
        first, second = (f.result() for f in [pool.submit(ingest, store, same) for store in stores])
    assert all(a != b for a, b in zip(first, second, strict=True)), "a report stored twice, or by neither"

    apart = [[a_report(i) for i in range(60)] for _ in stores]
    rng.shuffle(apart[1])
    with ThreadPoolExecutor(2) as pool:
        results = [f.result() for f in [pool.submit(ingest, store, sent) for store, sent in zip(stores, apart)]]
    assert all(all(stored) for stored in results)

    reports = 40 + 2 * 60
    for store in stores:
        stats = store.version_stats("digits", "1.0.0")
        assert (stats.devices, stats.calls, stats.errors) == (7, reports * sum(calls.values()), reports)
        assert {name: f["calls"] for name, f in stats.functions.items()} == {n: reports * c for n, c in calls.items()}
        assert close(stats.functions["fn05"]["p95"], 20.0)
        assert stats.signals["s"]["counts"] == [reports, 2 * reports, 3 * reports]
