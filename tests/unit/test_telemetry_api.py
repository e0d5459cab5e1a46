"""POST /api/telemetry and /api/logs against a real `waystation serve` on 127.0.0.1, and the automatic halt
of a guarded rollout that devices' reports find broken or slow."""

from __future__ import annotations

import itertools
import json
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.device import Manifest
from waystation.server.registry import Registry, bucket
from waystation.server.telemetry_store import LogStore, TelemetryStore

from server_process import Server
from telemetry_reports import installation, report, telemetry_bundle

KEY = Ed25519PrivateKey.generate()
_names = itertools.count()


def fresh(prefix: str = "tm") -> str:
    return f"{prefix}{next(_names)}x{random.randrange(1 << 30)}"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("telemetry-data")


@pytest.fixture(scope="module")
def server(site: Path, data: Path) -> Iterator[Server]:
    srv = Server(site, data).start()
    yield srv
    srv.stop()


def publish(root: Path, data: Path, name: str, versions: tuple[str, ...] = ("1.0.0",)) -> None:
    registry, parent = Registry(data), None
    for version in versions:
        registry.add_version(telemetry_bundle(root, KEY, name, version, parent))
        parent = version


@pytest.fixture
def bundle(tmp_path: Path, data: Path) -> str:
    """A bundle published in the server's registry (1.0.0): a model "classifier", a signal "top_score"."""
    name = fresh()
    publish(tmp_path, data, name)
    Registry(data).release(name, "1.0.0", "stable")
    return name


def post(server: Server, body: Any, path: str = "/api/telemetry") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{path}", content=content, headers={"Content-Type": "application/json"}, timeout=30)


def a_report(bundle: str, version: str = "1.0.0", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("functions", {"classify": ([3.0, 4.0, 5.0], {"model-error": 1})})
    return report(bundle, version, models={"classifier": [1.0, 1.5]}, startup={"open": [200.0]},
                  signals={"top_score": [0, 1, 1, 2, 3, 3]}, **kwargs)


def test_a_report_is_accepted_then_counted_once(server: Server, data: Path, bundle: str) -> None:
    sent = a_report(bundle)
    first = post(server, sent)
    assert first.status_code == 202 and first.json() == {"accepted": True}
    assert first.headers["cache-control"] == "no-store"
    again = post(server, sent)
    assert again.status_code == 200 and again.json() == {"duplicate": True}
    stats = TelemetryStore(data).version_stats(bundle, "1.0.0")
    assert (stats.devices, stats.calls, stats.errors) == (1, 3, 1)
    assert stats.signals["top_score"]["counts"] == [0, 1, 1, 2, 3, 3]


def test_percentiles_over_many_reports_match_the_samples(server: Server, data: Path, bundle: str) -> None:
    rng = random.Random(11)
    samples: list[float] = []
    for _ in range(25):
        mine = [rng.lognormvariate(2.5, 0.7) for _ in range(rng.randint(5, 60))]
        samples += mine
        assert post(server, a_report(bundle, functions={"classify": (mine, {})})).status_code == 202
    stats = TelemetryStore(data).version_stats(bundle, "1.0.0")
    assert stats.calls == len(samples) and stats.devices == 25
    for got, q in ((stats.p50, 0.5), (stats.p95, 0.95), (stats.p99, 0.99)):
        want = float(np.quantile(samples, q, method="lower"))
        assert got is not None and abs(got - want) <= 0.02 * want, (q, got, want)


def _set(report: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`report` with the field at `path` (dots; [n] for list items) set to `value`, or removed for DELETE."""
    keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")]
    target = report
    for key in keys[:-1]:
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return report


DELETE = object()
F = "bundles.0.functions.classify"


@pytest.mark.parametrize(("path", "value", "names"), [
    ("schema", 2, "schema: 2"),
    ("id", "not-a-uuid", "id: 'not-a-uuid' is not a lowercase uuid v4"),
    ("id", DELETE, "the field 'id' is missing"),
    ("installation", "xyz", "installation:"),
    ("start", -1, "start:"),
    ("start", 1_764_780_060_001, "start: 1764780060001 is after end"),
    ("device.cores", 3, "device.cores: 3"),
    ("device.memory", "16GB", "device.memory: '16GB'"),
    ("device.userAgent", "Mozilla/5.0", "device: unknown field 'userAgent'"),
    ("device.isolated", "yes", "device.isolated"),
    ("nickname", "bob", "the report: unknown field 'nickname'"),
    ("bundles", [], "bundles: must be an array of 1 to 16"),
    ("bundles.0.version", "1 0 0", "bundles[0].version"),
    ("bundles.0.arguments", [1, 2], "bundles[0]: unknown field 'arguments'"),
    (f"{F}.calls", -3, f"{F.replace('.0.', '[0].')}.calls"),
    (f"{F}.calls", 2.5, ".calls: 2.5 is not an integer"),
    (f"{F}.calls", True, ".calls: True is not an integer"),
    (f"{F}.errors", {"model-error": 9}, "9 errors in 3 calls"),
    (f"{F}.errors", {"Some Message text": 1}, ".errors: 'Some Message text' is not an error code"),
    (f"{F}.traceback", "File ...", "unknown field 'traceback'"),
    (f"{F}.latency.n", 2, "the buckets hold 3 samples, not n=2"),
    (f"{F}.latency.b", {"99999": 3}, "'99999' is not a bucket index"),
    (f"{F}.latency.min", 90.0, "min 90.0 is above max"),
    (f"{F}.latency.sum", "12", "latency.sum"),
    (f"{F}.ranOn", {"cloud": 3}, ".ranOn: must map device and/or server"),
    ("bundles.0.models.classifier.runs", 1, "models.classifier.latency.n: 2 is not an integer from 0 to 1"),
    ("bundles.0.startup.compile", {"n": 0, "sum": 0, "min": None, "max": None, "b": {}}, "'compile' is not a start-up phase"),
    ("bundles.0.signals.top_score.n", 99, "the counts add up to 10, not n=99"),
])
def test_a_malformed_report_is_refused_naming_the_field(server: Server, data: Path, bundle: str, path: str,
                                                        value: Any, names: str) -> None:
    sent = _set(a_report(bundle), path, value)
    answer = post(server, sent)
    assert answer.status_code == 400, answer.text
    assert names in answer.json()["error"]
    assert TelemetryStore(data).version_stats(bundle, "1.0.0").calls == 0


@pytest.mark.parametrize(("body", "names"), [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"schema": NaN}', "NaN is not a JSON number"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_body_that_is_not_a_json_object_is_refused(server: Server, body: bytes, names: str) -> None:
    answer = post(server, body)
    assert answer.status_code == 400 and names in answer.json()["error"]


def test_names_the_version_does_not_declare_are_refused(server: Server, bundle: str) -> None:
    answer = post(server, report(bundle, "1.0.0", models={"detector": [1.0]}))
    assert answer.status_code == 400
    assert f"bundles[0].models: {bundle} 1.0.0 has no model 'detector' (its models: ['classifier'])" in answer.json()["error"]
    answer = post(server, report(bundle, "1.0.0", signals={"confidence": [1, 2]}))
    assert answer.status_code == 400 and "declares no signal 'confidence'" in answer.json()["error"]
    answer = post(server, report(bundle, "1.0.0", signals={"top_score": [1, 2, 3]}))
    assert answer.status_code == 400 and "top_score.counts: 3 bins, the signal has 6" in answer.json()["error"]


def test_a_report_about_an_unknown_version_is_refused_whole(server: Server, data: Path, bundle: str) -> None:
    sent = a_report(bundle)
    sent["bundles"].append({**a_report(bundle, "9.9.9")["bundles"][0]})
    answer = post(server, sent)
    assert answer.status_code == 422
    assert answer.json() == {"error": f"no published version 9.9.9 of bundle {bundle!r}"}
    assert TelemetryStore(data).version_stats(bundle, "1.0.0").calls == 0  # the known section is not stored either
    assert post(server, a_report(fresh("unknown"))).status_code == 422


def test_a_report_past_the_size_limit_is_refused(server: Server, bundle: str) -> None:
    sent = a_report(bundle)
    body = json.dumps(sent).encode()
    padded = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(padded) == 64 * 1024 and post(server, padded).status_code == 202  # exactly at the limit
    sent["id"] = str(uuid.uuid4())
    body = json.dumps(sent).encode()
    answer = post(server, body[:-1] + b" " * (64 * 1024 + 1 - len(body)) + b"}")
    assert answer.status_code == 413 and "error" in answer.json()


def upload(bundle: str, lines: int = 3, version: str = "1.0.0", message: str = "model loaded") -> dict[str, Any]:
    return {"schema": 1, "id": str(uuid.uuid4()), "bundle": bundle, "version": version,
            "lines": [{"t": 1_764_780_000_000 + i, "level": "warning", "logger": f"waystation.{bundle}",
                       "message": f"{message} {i}"} for i in range(lines)]}


def test_logs_are_refused_while_logging_is_off_and_listed_when_on(server: Server, data: Path, bundle: str) -> None:
    sent = upload(bundle)
    off = post(server, sent, "/api/logs")
    assert off.status_code == 403 and off.json() == {"error": f"remote logging is off for bundle {bundle!r}"}
    Registry(data).set_logging(bundle, "stable", 10, "info")
    on = post(server, sent, "/api/logs")
    assert on.status_code == 202 and on.json() == {"accepted": True}
    assert post(server, sent, "/api/logs").json() == {"duplicate": True}
    listed = LogStore(data).recent(bundle)
    assert [line["message"] for line in listed] == ["model loaded 2", "model loaded 1", "model loaded 0"]
    assert listed[0]["version"] == "1.0.0" and listed[0]["level"] == "warning"
    assert post(server, upload(bundle, version="9.9.9"), "/api/logs").status_code == 422
    Registry(data).set_logging(bundle, "stable", 0, "info")
    assert post(server, upload(bundle), "/api/logs").status_code == 403
    assert len(LogStore(data).recent(bundle)) == 3


def test_log_uploads_are_bounded(server: Server, data: Path, bundle: str) -> None:
    Registry(data).set_logging(bundle, "stable", 100, "debug")
    assert post(server, upload(bundle, lines=100), "/api/logs").status_code == 202
    answer = post(server, upload(bundle, lines=101), "/api/logs")
    assert answer.status_code == 400 and "lines: must be an array of 1 to 100 lines" in answer.json()["error"]
    at_limit = upload(bundle, lines=1, message="é" * 510)  # 1020 bytes + " 0": 1022
    assert post(server, at_limit, "/api/logs").status_code == 202
    answer = post(server, upload(bundle, lines=1, message="é" * 512), "/api/logs")
    assert answer.status_code == 400 and "lines[0].message: 1026 bytes; at most 1024" in answer.json()["error"]
    bad_level = upload(bundle)
    bad_level["lines"][1]["level"] = "loud"
    answer = post(server, bad_level, "/api/logs")
    assert answer.status_code == 400 and "lines[1].level: 'loud'" in answer.json()["error"]
    big = upload(bundle, lines=40, message="x" * 900)  # about 40 KiB
    assert post(server, big, "/api/logs").status_code == 413
    assert len(LogStore(data).recent(bundle, limit=1000)) == 101


def test_one_address_is_held_to_its_reports_per_minute(site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    name = fresh()
    publish(tmp_path, data, name)
    Registry(data).release(name, "1.0.0", "stable")
    Registry(data).set_logging(name, "stable", 10, "info")
    srv = Server(site, data, WAYSTATION_TELEMETRY_REPORTS_PER_MINUTE="3").start()
    try:
        assert [post(srv, a_report(name)).status_code for _ in range(2)] == [202, 202]
        assert post(srv, upload(name), "/api/logs").status_code == 202  # one budget for both routes
        refused = post(srv, a_report(name))
        assert refused.status_code == 429 and "3 a minute" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert post(srv, upload(name), "/api/logs").status_code == 429
        assert TelemetryStore(data).version_stats(name, "1.0.0").calls == 6
    finally:
        srv.stop()


# --- automatic halts ---------------------------------------------------------------------------


def guarded(tmp_path: Path, data: Path, rules: str) -> tuple[str, str]:
    """A bundle with 1.0.0 on stable at 100% and 1.0.1 at 50% guarded by `rules`; a device on 1.0.1."""
    name = fresh("guard")
    publish(tmp_path, data, name, ("1.0.0", "1.0.1"))
    registry = Registry(data)
    registry.release(name, "1.0.0", "stable")
    registry.release(name, "1.0.1", "stable", 50, halt_if=rules)
    device = next(f"d{i}" for i in range(1000) if bucket(f"d{i}", name, "1.0.1") < 50)
    assert served(data, name, device) == "1.0.1"
    return name, device


def served(data: Path, name: str, device: str) -> str:
    manifest = Registry(data).resolve(name, "stable", device)
    assert manifest is not None
    return Manifest.from_json(manifest).version


def send(server: Server, name: str, version: str, devices: int | list[str], samples: list[float],
         errors: int = 0) -> None:
    """A report from each of `devices` (installation ids, or a number of new ones)."""
    for device in [installation() for _ in range(devices)] if isinstance(devices, int) else devices:
        sent = report(name, version, device=device,
                      functions={"classify": (samples, {"model-error": errors} if errors else {})})
        assert post(server, sent).status_code == 202


def wait_for_halt(data: Path, name: str, device: str, seconds: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if served(data, name, device) == "1.0.0":
            return next(r for r in Registry(data).history(name) if r["version"] == "1.0.1")
        time.sleep(0.1)
    raise AssertionError(f"{name} 1.0.1 was not halted within {seconds} s: {Registry(data).history(name)}")


def test_a_release_failing_on_devices_is_halted_and_its_devices_go_back(server: Server, data: Path,
                                                                        tmp_path: Path) -> None:
    name, device = guarded(tmp_path, data, "errors>5%,devices>=10")
    send(server, name, "1.0.0", 15, [5.0] * 10)
    send(server, name, "1.0.1", 12, [5.0] * 10, errors=5)
    release = wait_for_halt(data, name, device)
    # Checked while the reports come: decided by the 10th installation's report, or one after it.
    assert re.fullmatch(r"halted: error rate 50\.0% > 5% over 1[0-2] devices", release["halt_reason"]), release
    assert release["halted_at"] is not None
    assert Registry(data).guarded_rollouts() == [] or all(r["bundle"] != name for r in Registry(data).guarded_rollouts())


def test_a_slow_release_is_halted_against_the_previous_versions_p95(server: Server, data: Path, tmp_path: Path) -> None:
    name, device = guarded(tmp_path, data, "errors>5%,p95>1.5x,devices>=10")
    rng = random.Random(5)
    for _ in range(12):
        send(server, name, "1.0.0", 1, [rng.uniform(8, 12) for _ in range(20)])
        send(server, name, "1.0.1", 1, [rng.uniform(25, 35) for _ in range(20)])
    reason = wait_for_halt(data, name, device)["halt_reason"]
    assert re.fullmatch(r"halted: p95 [23]\d\.\d ms > 1\.5x the previous version's \d+\.\d ms over 1[0-2] devices",
                        reason), reason


def test_nothing_is_decided_below_the_devices_minimum(server: Server, data: Path, tmp_path: Path) -> None:
    name, device = guarded(tmp_path, data, "errors>5%,devices>=10")
    send(server, name, "1.0.0", 10, [5.0] * 10)
    nine = [installation() for _ in range(9)]
    send(server, name, "1.0.1", nine, [5.0] * 10, errors=10)  # every call failing, on 9 installations
    time.sleep(2.5)  # more than the checks' interval: a check ran on the last of these reports
    send(server, name, "1.0.1", nine[:3], [5.0] * 10, errors=10)  # more reports from the same 9 change nothing
    time.sleep(2.5)
    assert served(data, name, device) == "1.0.1"
    assert Registry(data).history(name)[0]["halted_at"] is None
    # The tenth installation: now it is decided.
    send(server, name, "1.0.1", 1, [5.0] * 10, errors=10)
    assert wait_for_halt(data, name, device)["halt_reason"] == "halted: error rate 100.0% > 5% over 10 devices"


def test_a_report_the_store_cannot_take_now_is_refused_with_503_and_taken_later(server: Server, data: Path,
                                                                                 bundle: str, storage_engine: str) -> None:
    if storage_engine != "sqlite":
        pytest.skip("SQLite's write lock held by another process; PostgreSQL waits on a lock instead (no lock "
                    "timeout), and its outage answers 503 through storage.Unavailable")
    sent = a_report(bundle)
    lock = sqlite3.connect(data / "telemetry.sqlite3", timeout=1)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # another process holding the write lock past the store's 10 s
        answer = post(server, sent)
    finally:
        lock.rollback()
        lock.close()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    assert "send it again later" in answer.json()["error"]
    assert post(server, sent).status_code == 202  # nothing of it was stored: the same id is new
    assert TelemetryStore(data).version_stats(bundle, "1.0.0").calls == 3
