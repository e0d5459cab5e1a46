"""`ctx.state` on CPython outlives the process: `waystation run --data DIR` keeps documents in
DIR/state.sqlite3, so the next run (another process) sees what this one wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from waystation.device.hosts.state_native import STATE_FILE, NativeStateBackend
from waystation.device.state import open_state

from bundle_factory import make_bundle
from server_process import ROOT

WORKFLOW = b'''
from waystation.device import export

@export
def add(ctx, text: str) -> list:
    doc = ctx.state("notes")
    with doc.transaction():
        doc.list("items").append(text)
        doc.counter("added").increment()
    return doc.list("items").to_list()

@export
def read(ctx) -> dict:
    doc = ctx.state("notes")
    return {"items": doc.list("items").to_list(), "added": doc.counter("added").value}
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles"), None, "notes-cli", "1.0.0", body=WORKFLOW)


def run(bundle: Path, function: str, args: dict, *extra: str, env: dict[str, str] | None = None) -> object:
    done = subprocess.run([sys.executable, "-m", "waystation", "run", str(bundle), function, "--args", json.dumps(args),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_runs_see_each_others_writes(bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "device"
    assert run(bundle, "add", {"text": "first"}, "--data", str(data)) == ["first"]
    assert run(bundle, "add", {"text": "second"}, "--data", str(data)) == ["first", "second"]
    assert run(bundle, "read", {}, "--data", str(data)) == {"items": ["first", "second"], "added": 2}
    assert (data / STATE_FILE).is_file()
    # Another folder is another device: it starts empty.
    assert run(bundle, "read", {}, "--data", str(tmp_path / "other")) == {"items": [], "added": 0}


def test_without_data_the_users_data_folder_is_used(bundle: Path, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "WAYSTATION_DATA"} | {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    run(bundle, "add", {"text": "kept"}, env=env)
    assert run(bundle, "read", {}, env=env) == {"items": ["kept"], "added": 1}
    assert (tmp_path / "xdg" / "waystation" / STATE_FILE).is_file()


def test_concurrent_writers_keep_both_edits(tmp_path: Path) -> None:
    """Two runtimes open the same folder, both write before either reloads: both edits survive."""
    a, b = NativeStateBackend(tmp_path), NativeStateBackend(tmp_path)
    open_state("doc", a).map("m")["from_a"] = 1
    open_state("doc", b).map("m")["from_b"] = 2
    a.close()
    b.close()
    again = NativeStateBackend(tmp_path)
    assert open_state("doc", again).map("m").to_dict() == {"from_a": 1, "from_b": 2}
    assert again.names() == ["doc"]
    again.close()


def test_a_long_history_is_compacted_when_loaded(tmp_path: Path) -> None:
    import sqlite3

    first = NativeStateBackend(tmp_path)
    items = open_state("long", first).list("items")
    for i in range(600):
        items.append(i)
    first.close()
    again = NativeStateBackend(tmp_path)
    assert open_state("long", again).list("items").to_list() == list(range(600))
    again.close()
    with sqlite3.connect(tmp_path / STATE_FILE) as db:
        assert db.execute("SELECT count(*) FROM updates WHERE doc = 'long'").fetchone()[0] == 1
    third = NativeStateBackend(tmp_path)
    assert open_state("long", third).list("items").to_list() == list(range(600))
    third.close()
