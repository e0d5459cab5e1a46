"""The event relay against a real `waystation serve` on 127.0.0.1: accounts, exactly-once storage, export."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from waystation.device import App
from waystation.device.hosts.data_native import NativeDataBackend
from waystation.server.events_store import EventLog
from waystation.server.registry import Registry

from data_bundle import build_data_bundle, unique_name
from server_process import Server, worst_health_check_while
from test_sync_server import register

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_data_bundle(tmp_path_factory.mktemp("events-bundle"), unique_name("relay"))


@pytest.fixture(scope="module")
def server(site: Path, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("events-data")
    Registry(data).publish(bundle, "stable")
    srv = Server(site, data, WAYSTATION_MAX_RELAY_BYTES=str(64 << 10)).start()
    yield srv
    srv.stop()


def event(**fields: object) -> dict[str, object]:
    return {"table": "clicks", "id": secrets.token_hex(16), "ts": time.time(), "item_id": "a", **fields}


def post(server: Server, bundle: Path, events: list[dict], token: str | None, *, version: str = "1.0.0",
         compress: bool = False, raw: bytes | None = None) -> httpx.Response:
    body = raw if raw is not None else json.dumps({"version": version, "events": events}).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if compress:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return httpx.post(f"{server.url}/api/events/{bundle.parent.name}", content=body, headers=headers, timeout=30)


def stored(server: Server, bundle: Path) -> list[dict]:
    return EventLog(server.data).rows("clicks", bundle=bundle.parent.name)


def test_each_event_is_stored_exactly_once_whatever_is_sent_again(server: Server, bundle: Path) -> None:
    user, token = register(server)
    batch = [event(item_id=f"i{i}", dwell_ms=i) for i in range(4)]
    before = len(stored(server, bundle))
    first = post(server, bundle, batch, token, compress=True)
    assert first.status_code == 200 and first.json() == {"stored": 4, "duplicates": 0}
    again = post(server, bundle, batch, token)  # the answer was lost: the device sends it again
    assert again.json() == {"stored": 0, "duplicates": 4}
    overlap = post(server, bundle, [*batch[2:], batch[3], event(item_id="new")], token, compress=True)
    assert overlap.json() == {"stored": 1, "duplicates": 3}
    rows = stored(server, bundle)
    assert len(rows) - before == 5
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    mine = [r for r in rows if r["user"] == user]
    assert sorted(r["item_id"] for r in mine) == ["i0", "i1", "i2", "i3", "new"]


def test_a_field_not_declared_relayable_refuses_the_whole_batch(server: Server, bundle: Path) -> None:
    _, token = register(server)
    before = len(stored(server, bundle))
    response = post(server, bundle, [event(item_id="fine"), event(secret="password123")], token)
    assert response.status_code == 400
    assert response.json() == {"error": "event 1 of table 'clicks': field 'secret' may not be relayed; "
                                        "the relayable fields are ['item_id', 'dwell_ms']"}
    views = post(server, bundle, [{**event(), "table": "views"}], token)
    assert views.status_code == 400 and "relays no event table 'views'" in views.json()["error"]
    wrong = post(server, bundle, [event(dwell_ms="long")], token)
    assert wrong.status_code == 400 and "field 'dwell_ms': expected int, got str" in wrong.json()["error"]
    bad_id = post(server, bundle, [event(id="'; DROP TABLE events; --")], token)
    assert bad_id.status_code == 400 and "'id' must be 32 lowercase hex digits" in bad_id.json()["error"]
    assert len(stored(server, bundle)) == before


def test_unauthenticated_and_unknown_bundle_versions_are_refused(server: Server, bundle: Path) -> None:
    for token in (None, "not-a-token"):
        response = post(server, bundle, [event()], token)
        assert response.status_code == 401 and "signed-in account" in response.json()["error"]
    _, token = register(server)
    response = post(server, bundle, [event()], token, version="9.9.9")
    assert response.status_code == 404 and "version '9.9.9' is not published" in response.json()["error"]
    assert post(server, bundle, [], token, raw=b'{"version": "1.0.0", "events": [NaN]}').status_code == 400


def test_a_gzip_bomb_is_refused_at_the_limit_while_others_keep_their_round_trip(server: Server, bundle: Path) -> None:
    """64 KiB of gzip inflating to 64 MiB, eight at once: each stops at max_relay_bytes (64 KiB here)."""
    _, token = register(server)
    bomb = gzip.compress(b'{"version": "1.0.0", "events": [' + b" " * (64 << 20), compresslevel=9)
    assert len(bomb) < 64 << 10
    answers: list[httpx.Response] = []

    def attack() -> None:
        answers.append(httpx.post(f"{server.url}/api/events/{bundle.parent.name}", content=bomb, timeout=60,
                                  headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"}))

    threads = [threading.Thread(target=attack) for _ in range(8)]
    worst = worst_health_check_while(server.url, threads)
    assert [a.status_code for a in answers] == [413] * 8
    assert "larger than 65536 bytes (WAYSTATION_MAX_RELAY_BYTES)" in answers[0].json()["error"]
    assert worst < 1.0, f"a health check took {worst:.2f} s during the attack"


def test_events_relayed_from_a_device_are_exported_as_jsonl_and_csv(server: Server, bundle: Path, tmp_path: Path) -> None:
    """The device's relay batches, posted as the browser would, then `waystation events export`."""
    _, token = register(server)
    app = asyncio.run(App.open(bundle, data=NativeDataBackend(tmp_path)))
    marker = unique_name("export")
    asyncio.run(app.data.add_events("clicks", [{"item_id": f"{marker}-{i}", "dwell_ms": i, "secret": "x"} for i in range(7)]))
    while (batch := app.data.relay_batch(limit=3)) is not None:
        assert post(server, bundle, batch["events"], token, compress=True).status_code == 200
        asyncio.run(app.data.mark_relayed(batch["upto"]))
    cmd = [sys.executable, "-m", "waystation", "events", "export", "clicks", "--bundle", bundle.parent.name,
           "--since", "1h", "--data", str(server.data)]
    lines = subprocess.run([*cmd, "--format", "jsonl"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    mine = [json.loads(line) for line in lines if marker in line]
    assert sorted(e["item_id"] for e in mine) == [f"{marker}-{i}" for i in range(7)]
    assert all("secret" not in e and e["table"] == "clicks" for e in mine)
    text = subprocess.run([*cmd, "--format", "csv"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["item_id"].startswith(marker)]
    assert sorted(int(r["dwell_ms"]) for r in rows) == list(range(7))
    header = csv.DictReader(io.StringIO(text)).fieldnames or []
    assert list(header) == ["bundle", "table", "id", "ts", "user", "dwell_ms", "item_id"]
    future = subprocess.run([*cmd[:-4], "--since", "2999-01-01T00:00:00Z", "--data", str(server.data)],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert future == ""


def test_an_export_longer_than_a_batch_comes_whole_in_order_once(tmp_path: Path) -> None:
    """Exports read in batches of the order's key (ts, id, bundle): events sharing a ts, or a ts and an
    id in two bundles, straddle batch ends without being lost or read twice; CSV names every field."""
    log = EventLog(tmp_path / "data")
    events = [{"table": "clicks", "id": secrets.token_hex(16), "ts": 1767225600.0 + i // 7, "item_id": f"a{i}"}
              for i in range(2345)]
    twin = [{**e, "extra": 1} for e in events[1000:1010]]  # the same ids and times in another bundle
    assert log.add("one", "alice", events) == {"stored": 2345, "duplicates": 0}
    assert log.add("one", "alice", events[:5]) == {"stored": 0, "duplicates": 5}
    assert log.add("two", "bob", twin)["stored"] == 10
    rows = log.rows("clicks")
    assert [(r["ts"], r["id"], r["bundle"]) for r in rows] == sorted(
        (e["ts"], e["id"], b) for b, sent in (("one", events), ("two", twin)) for e in sent)
    assert [r["item_id"] for r in log.rows("clicks", bundle="one", since=1767225600.0 + 300)] == [
        e["item_id"] for e in sorted(events, key=lambda e: (e["ts"], e["id"])) if e["ts"] >= 1767225600.0 + 300]
    assert log.field_names("clicks") == ["extra", "item_id"] and log.field_names("clicks", bundle="one") == ["item_id"]
    lines = "".join(log.export("clicks", fmt="csv")).splitlines()
    assert lines[0] == "bundle,table,id,ts,user,extra,item_id" and len(lines) == 1 + 2355
