"""Feature tables: `waystation features publish`, deltas of changed rows over HTTP, the device's copy and its age."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from waystation.device import App, DataError, StaleFeaturesError
from waystation.device.hosts.data_native import NativeDataBackend
from waystation.server.features_store import FeatureStore

from data_bundle import build_data_bundle
from server_process import Server, worst_health_check_while

ROOT = Path(__file__).resolve().parents[2]


def items(n: int, *, changed: dict[int, str] | None = None, dim: int = 4) -> list[dict]:
    changed = changed or {}
    return [{"item_id": f"it{i}", "title": changed.get(i, f"Item {i}"), "price": i * 1.5,
             "embedding": [float(i), float(i % 3), -1.0, i / 7]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def publish(data: Path, name: str, file: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "waystation", "features", "publish", name, str(file), "--key", "item_id",
                          "--data", str(data)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    site = tmp_path_factory.mktemp("features-site")
    (site / "boot.json").write_text("{}")
    (site / "index.html").write_text("<!doctype html>")
    srv = Server(site, tmp_path_factory.mktemp("features-data")).start()
    yield srv
    srv.stop()


def test_a_new_version_stores_only_what_changed(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    first = store.publish("items", write_jsonl(tmp_path / "v1.jsonl", items(100)), "item_id")
    assert first == {"name": "items", "version": 1, "added": 100, "changed": 0, "deleted": 0, "unchanged": 0}
    new = {"item_id": "new", "title": "New", "price": 1.0, "embedding": [0, 0, 0, 0]}
    rows = [*items(100, changed={5: "Five", 6: "Six"})[:-1], new]
    second = store.publish("items", write_jsonl(tmp_path / "v2.jsonl", rows), "item_id")
    assert second == {"name": "items", "version": 2, "added": 1, "changed": 2, "deleted": 1, "unchanged": 97}
    assert store.publish("items", tmp_path / "v2.jsonl", "item_id")["version"] == 2  # nothing changed: no new version
    delta = store.delta("items", since=1)
    assert delta is not None and delta["count"] == 3 and delta["deleted"] == ["it99"] and not delta["full"]
    assert store.delta("items", since=2)["count"] == 0
    for since in (None, 0, 7):  # no copy, or a version this table never had: the whole table
        whole = store.delta("items", since=since)
        assert whole["full"] and whole["count"] == 100 and whole["deleted"] == []
    assert store.delta("nope", since=None) is None


def test_csv_with_vector_cells_and_bad_files(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    csv_file = tmp_path / "items.csv"
    csv_file.write_text('item_id,title,n,embedding\na,"Soup, hot",3,"[1, 2.5]"\nb,Bread,4,"[0, -1]"\n')
    assert store.publish("menu", csv_file, "item_id")["added"] == 2
    columns = [["item_id", "str"], ["title", "str"], ["n", "int"], ["embedding", "vector[2]"]]
    assert store.delta("menu", None)["columns"] == columns
    with pytest.raises(DataError, match=r"no key column 'id'; its columns are \['item_id', 'title', 'n', 'embedding'\]"):
        store.publish("menu", csv_file, "id")
    (tmp_path / "dup.jsonl").write_text('{"item_id": "a"}\n{"item_id": "a"}\n')
    with pytest.raises(DataError, match="key 'a' appears twice"):
        store.publish("dup", tmp_path / "dup.jsonl", "item_id")
    (tmp_path / "ragged.jsonl").write_text('{"item_id": "a", "v": [1, 2]}\n{"item_id": "b", "v": [1]}\n')
    with pytest.raises(DataError, match=r"column 'v' holds vectors of different lengths \[1, 2\]"):
        store.publish("ragged", tmp_path / "ragged.jsonl", "item_id")
    with pytest.raises(DataError, match="not a valid name"):
        store.publish("x; DROP TABLE feature_rows", csv_file, "item_id")


def test_an_update_reaches_a_device_as_a_delta_and_is_read_offline(server: Server, tmp_path: Path) -> None:
    name = "items"
    publish(server.data, name, write_jsonl(tmp_path / "v1.jsonl", items(500)))
    app = asyncio.run(App.open(build_data_bundle(tmp_path), data=NativeDataBackend(tmp_path / "device")))

    def sync() -> tuple[dict, int]:
        since = app.data.feature_version(name)
        url = f"{server.url}/api/features/{name}" + ("" if since is None else f"?since={since}")
        response = httpx.get(url, headers={"Accept-Encoding": "gzip"}, timeout=30)
        assert response.status_code == 200, response.text
        asyncio.run(app.data.apply_features(response.json()))
        return response.json(), int(response.headers.get("content-length", len(response.content)))

    whole, whole_bytes = sync()
    assert whole["full"] and len(whole["rows"]) == 500 and app.data.feature_version(name) == 1
    publish(server.data, name, write_jsonl(tmp_path / "v2.jsonl", items(499, changed={3: "Three", 250: "Half"})))
    delta, delta_bytes = sync()
    assert (delta["full"], len(delta["rows"]), delta["deleted"]) == (False, 2, ["it499"])
    assert delta_bytes * 10 < whole_bytes, (delta_bytes, whole_bytes)  # gzip on both; 3 rows of 500 travel

    server_rows = {r["item_id"]: r for r in items(499, changed={3: "Three", 250: "Half"})}
    device_rows = app.data.feature_query(name).rows()  # no server needed from here on
    assert len(device_rows) == 499
    for row in device_rows:
        expected = server_rows[row["item_id"]]
        assert row["title"] == expected["title"] and row["price"] == expected["price"]
        assert row["embedding"] == pytest.approx(expected["embedding"], rel=1e-6)
    assert app.data.feature_query(name).tensor("embedding").shape == (499, 4)
    asyncio.run(app.data.add_events("clicks", [{"item_id": "it3"}, {"item_id": "it250"}, {"item_id": "gone"}]))
    assert asyncio.run(app.call("titles"))["result"] == ["Half", "Three"]


def test_the_api_refuses_unknown_tables_and_bad_versions(server: Server) -> None:
    response = httpx.get(f"{server.url}/api/features/nothing_here")
    assert response.status_code == 404 and response.json() == {"error": "no feature table 'nothing_here' is published"}
    bad = httpx.get(f"{server.url}/api/features/items?since=1%20OR%201=1")
    assert bad.status_code == 400 and "?since= must be a version number" in bad.json()["error"]
    assert httpx.get(f"{server.url}/api/features/Items%3B").status_code == 400


def test_a_stale_copy_is_reported_with_its_age(tmp_path: Path) -> None:
    app = asyncio.run(App.open(build_data_bundle(tmp_path), data=NativeDataBackend(tmp_path / "device")))
    with pytest.raises(StaleFeaturesError, match="'items' has not reached this device yet"):
        app.data.feature_query("items").select("title").rows()
    assert app.data.feature_query("items").age is None
    store = FeatureStore(tmp_path / "server")
    store.publish("items", write_jsonl(tmp_path / "v1.jsonl", items(3)), "item_id")
    delta = json.loads(store.delta_json("items", None))
    app.data.features.apply(delta, now=time.time() - 2 * 3600 - 5 * 60)
    query = app.data.feature_query("items")
    assert 7400 < query.age < 7600
    with pytest.raises(StaleFeaturesError, match=r"'items' is 2h 5m( \d+s)? old, older than its max_age 1h"):
        query.rows()
    with pytest.raises(StaleFeaturesError):  # a join reading it too
        app.data.event_query("clicks").join(query, on="item_id").count()
    assert len(app.data.feature_query("items", stale_ok=True).rows()) == 3
    asyncio.run(app.data.apply_features({**delta, "full": False, "rows": [], "deleted": []}))  # the server said: no change
    assert app.data.feature_query("items").age < 60 and len(app.data.feature_query("items").rows()) == 3
    with pytest.raises(DataError, match=r"declares no feature table 'prices'; it declares \['items'\]"):
        app.data.feature_query("prices")


def test_gzip_answers_decode_to_the_same_delta(server: Server, tmp_path: Path) -> None:
    publish(server.data, "zipped", write_jsonl(tmp_path / "z.jsonl", items(200)))
    plain = httpx.get(f"{server.url}/api/features/zipped", headers={"Accept-Encoding": "identity"})
    with httpx.stream("GET", f"{server.url}/api/features/zipped", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw)) == plain.json() and len(raw) < len(plain.content) / 2


def test_many_devices_fetching_the_whole_table_at_once_cost_one_answer(server: Server, tmp_path: Path) -> None:
    """30 full fetches of a 500 x 384 table at once: all answered, the server's health round trip stays under 1 s."""
    import random
    import threading

    rng = random.Random(5)
    rows = [{"item_id": f"r{i}", "embedding": [rng.uniform(-1, 1) for _ in range(384)]} for i in range(500)]
    publish(server.data, "crowd", write_jsonl(tmp_path / "crowd.jsonl", rows))
    statuses: list[int] = []

    def fetch() -> None:
        response = httpx.get(f"{server.url}/api/features/crowd", headers={"Accept-Encoding": "gzip"}, timeout=60)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=fetch) for _ in range(30)]
    worst = worst_health_check_while(server.url, threads)
    assert statuses == [200] * 30 and worst < 1.0, worst
    rows[7]["embedding"] = [0.0] * 384
    publish(server.data, "crowd", write_jsonl(tmp_path / "crowd2.jsonl", rows))
    fresh = httpx.get(f"{server.url}/api/features/crowd").json()  # a kept answer never hides a new version
    assert fresh["version"] == 2 and len(fresh["rows"]) == 500
    assert httpx.get(f"{server.url}/api/features/crowd?since=1").json()["rows"][0][0] == "r7"
