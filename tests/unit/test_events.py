"""The event store on CPython: a real bundle (bundle.toml with [events.*]), real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from waystation.device import App, DataError
from waystation.device.hosts.data_native import NativeDataBackend

from data_bundle import build_data_bundle


def open_app(tmp_path: Path, *, rows: int = 100000, data: Path | None = None) -> App:
    folder = build_data_bundle(tmp_path, rows=rows)
    return asyncio.run(App.open(folder, data=NativeDataBackend(data or tmp_path / "device")))


def add(app: App, table: str, rows: object) -> list[str | None]:
    return asyncio.run(app.data.add_events(table, rows))


def test_added_events_are_read_back_and_survive_reopening(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    ids = add(app, "clicks", [{"item_id": "a", "score": 0.5, "liked": True, "emb": [1, 2, 3, 4]}, {"item_id": "b"}])
    assert len(ids) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]
    rows = app.data.event_query("clicks").sort("item_id").rows()
    expected = [(ids[0], "a", True, [1, 2, 3, 4]), (ids[1], "b", None, None)]
    assert [(r["id"], r["item_id"], r["liked"], r["emb"]) for r in rows] == expected
    assert abs(rows[0]["ts"] - time.time()) < 60

    reopened = asyncio.run(App.open(app.files._root, data=NativeDataBackend(tmp_path / "device")))
    assert reopened.data.event_query("clicks").count() == 2


@pytest.mark.parametrize(("event", "field", "problem"), [
    ({"item_id": 3}, "item_id", "expected str, got int"),
    ({"item_id": "a", "dwell_ms": "5"}, "dwell_ms", "expected int, got str"),
    ({"item_id": "a", "dwell_ms": True}, "dwell_ms", "expected int, got bool"),
    ({"item_id": "a", "score": float("nan")}, "score", "not a finite number"),
    ({"item_id": "a", "emb": [1, 2, 3]}, "emb", "expected a vector of 4 numbers, got 3 values"),
    ({"item_id": "a", "emb": [1, 2, "x", 4]}, "emb", "numbers only"),
    ({"item_id": "a", "colour": "red"}, "colour", "not declared"),
    ({"dwell_ms": 3}, "item_id", "a value is required"),
])
def test_a_schema_violation_names_table_and_field_and_stores_nothing(
    tmp_path: Path, event: dict, field: str, problem: str,
) -> None:
    app = open_app(tmp_path)
    with pytest.raises(DataError) as error:
        add(app, "views" if field == "colour" else "clicks", [{"item_id": "ok"}, event])
    message = str(error.value)
    assert f"field {field!r}" in message and problem in message and "row 1" in message
    assert "event table 'clicks'" in message or "event table 'views'" in message
    assert app.data.event_query("clicks").count() == 0 and app.data.event_query("views").count() == 0


def test_unknown_table_and_column_errors_list_what_exists(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    with pytest.raises(DataError, match=r"no event table 'nope'; it declares \['clicks', 'views'\]"):
        app.data.event_query("nope")
    with pytest.raises(DataError, match=r"no event table 'nope'"):
        add(app, "nope", {"item_id": "a"})
    with pytest.raises(DataError, match=r"has no column 'nope'; it has \['id', 'ts', 'item_id'"):
        app.data.event_query("clicks").select("nope")
    with pytest.raises(DataError, match=r"has no column 'x; DROP TABLE'"):
        app.data.event_query("clicks").where("x; DROP TABLE", "==", 1)
    with pytest.raises(DataError, match=r"unknown operator 'or 1=1'"):
        app.data.event_query("clicks").where("item_id", "or 1=1", "a")
    with pytest.raises(DataError, match=r"expected int, got str"):
        app.data.event_query("clicks").where("dwell_ms", ">", "5")
    with pytest.raises(DataError, match=r"unknown aggregate 'median'"):
        app.data.event_query("clicks").group_by("item_id").agg(m=("dwell_ms", "median"))


def test_sql_looking_strings_are_values(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    nasty = ["a'); DROP TABLE \"ev_x_clicks\"; --", "' OR '1'='1", "%", "\"; DELETE FROM _ws_relay; --", "\x00nul"]
    add(app, "clicks", [{"item_id": s} for s in nasty])
    query = app.data.event_query("clicks")
    assert sorted(query.columns()["item_id"]) == sorted(nasty)
    for s in nasty:
        assert query.where(item_id=s).count() == 1
    assert query.where("item_id", "in", nasty[:2]).count() == 2
    assert query.where("item_id", "like", "' OR%").count() == 1
    assert query.count() == len(nasty)  # nothing dropped, nothing deleted


def test_retention_by_rows_keeps_the_newest(tmp_path: Path) -> None:
    app = open_app(tmp_path, rows=5)
    for i in range(12):
        add(app, "clicks", {"item_id": f"i{i}"})
    add(app, "clicks", [{"item_id": f"batch{i}"} for i in range(3)])
    assert app.data.event_query("clicks").count() == 5
    assert app.data.event_query("clicks").columns()["item_id"] == ["i10", "i11", "batch0", "batch1", "batch2"]


def test_retention_by_age_deletes_expired_rows(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    now = time.time()
    add(app, "clicks", [{"item_id": "old", "ts": now - 8 * 86400}, {"item_id": "fresh", "ts": now - 6 * 86400}])
    assert app.data.event_query("clicks").columns()["item_id"] == ["fresh"]
    db = sqlite3.connect(tmp_path / "device" / "waystation.sqlite3")
    table = next(n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'ev_%clicks'"))
    assert db.execute(f'SELECT item_id FROM "{table}"').fetchall() == [("fresh",)]  # gone from the file, not hidden


def test_hooks_validate_enrich_and_drop(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    ids = add(app, "clicks", [{"item_id": "a"}, {"item_id": "drop-me"}, {"item_id": "b", "dwell_ms": 7}])
    assert ids[1] is None and ids[0] and ids[2]
    assert app.data.event_query("clicks").sort("item_id").select("item_id", "dwell_ms").rows() == [
        {"item_id": "a", "dwell_ms": 0}, {"item_id": "b", "dwell_ms": 7}]
    refused = r"event table 'clicks', row 1: refused by hook check_click: ValueError: refused on purpose"
    with pytest.raises(DataError, match=refused):
        add(app, "clicks", [{"item_id": "c"}, {"item_id": "refuse-me"}])
    assert app.data.event_query("clicks").count() == 2  # the batch is all or nothing


def test_workflow_functions_add_and_read_through_ctx(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    for item in ("x", "y", "x"):
        result = asyncio.run(app.call("click", {"item_id": item}))
        assert len(result["result"]) == 1
    assert asyncio.run(app.call("recent", {"minutes": 5}))["result"] == ["x", "y", "x"]


def test_relay_batches_hold_only_relayable_fields_and_resume_after_acknowledgement(tmp_path: Path) -> None:
    app = open_app(tmp_path)
    add(app, "clicks", [{"item_id": f"i{i}", "secret": "s", "dwell_ms": i} for i in range(5)])
    add(app, "views", {"item_id": "v"})  # views relay nothing
    first = app.data.relay_batch(limit=3)
    assert first is not None and [e["item_id"] for e in first["events"]] == ["i0", "i1", "i2"]
    assert all(set(e) == {"table", "id", "ts", "item_id", "dwell_ms"} for e in first["events"])
    assert app.data.relay_batch(limit=3)["events"] == first["events"]  # not acknowledged: sent again
    asyncio.run(app.data.mark_relayed(first["upto"]))
    second = app.data.relay_batch(limit=3)
    assert [e["item_id"] for e in second["events"]] == ["i3", "i4"]
    asyncio.run(app.data.mark_relayed(second["upto"]))
    asyncio.run(app.data.mark_relayed(first["upto"]))  # a late acknowledgement never moves back
    assert app.data.relay_batch() is None
    add(app, "clicks", {"item_id": "later"})
    assert [e["item_id"] for e in app.data.relay_batch()["events"]] == ["later"]
    add(app, "clicks", [{"item_id": "x" * 1000} for _ in range(10)])
    sized = app.data.relay_batch(max_bytes=3500)  # a byte budget too: the server bounds a batch's size
    assert [len(e["item_id"]) for e in sized["events"]] == [5, 1000, 1000, 1000]
    assert len(app.data.relay_batch(max_bytes=10)["events"]) == 1  # never none while some are pending


class SwitchingBackend:
    """Two accounts' databases, as the browser backend switches them on sign-in and out."""

    name = "switching"

    def __init__(self, folder: Path) -> None:
        self.folder, self.account, self.db = folder, "alice", None
        self.durable_calls = 0

    def switch(self, account: str) -> None:
        if self.db is not None:
            self.db.close()
        self.account, self.db = account, None

    def connect(self) -> sqlite3.Connection:
        if self.db is None:
            self.db = sqlite3.connect(self.folder / f"{self.account}.sqlite3", isolation_level=None)
        return self.db

    async def durable(self) -> None:  # the browser's is awaited too
        self.durable_calls += 1


def test_each_account_has_its_own_events_and_features(tmp_path: Path) -> None:
    from waystation.device.data import DeviceData

    backend = SwitchingBackend(tmp_path)
    folder = build_data_bundle(tmp_path)
    app = asyncio.run(App.open(folder, data=NativeDataBackend(tmp_path / "unused")))
    data = DeviceData(backend, app.manifest.name, app.manifest.declarations)
    asyncio.run(data.add_events("clicks", [{"item_id": "a"}, {"item_id": "b"}]))
    asyncio.run(data.apply_features({"name": "items", "version": 1, "key": "item_id", "full": True,
                                     "columns": [["item_id", "str"], ["title", "str"]], "rows": [["a", "A"]]}))
    backend.switch("bob")
    assert data.event_query("clicks").count() == 0 and data.feature_version("items") is None
    asyncio.run(data.add_events("clicks", {"item_id": "bob's"}))
    backend.switch("alice")
    assert sorted(data.event_query("clicks").columns()["item_id"]) == ["a", "b"]
    assert data.feature_query("items").rows() == [{"item_id": "a", "title": "A"}]
    assert backend.durable_calls == 3  # each committed write was made durable before add/apply returned


def test_waystation_run_keeps_events_in_its_data_folder(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    folder = build_data_bundle(tmp_path)
    root = Path(__file__).resolve().parents[2]

    def run(function: str, args: dict) -> object:
        out = subprocess.run([sys.executable, "-m", "waystation", "run", str(folder), function, "--args", json.dumps(args),
                              "--data", str(tmp_path / "cli-data")], cwd=root, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    run("click", {"item_id": "first"})
    run("click", {"item_id": "second"})
    assert run("recent", {"minutes": 5}) == ["first", "second"]
    assert (tmp_path / "cli-data" / "waystation.sqlite3").is_file()
