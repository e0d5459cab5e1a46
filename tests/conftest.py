"""Fixtures shared by every test layer: the project, a built site, a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server_process import ROOT, Server, free_port  # noqa: F401  (free_port, Server: for the tests)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole site, built once per test session, as `waystation build` makes it."""
    from waystation.site import build_site

    out = tmp_path_factory.mktemp("site") / "dist"
    build_site(ROOT, out, progress=lambda _msg: None)
    return out


@pytest.fixture(scope="session")
def server(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(site_dir, tmp_path_factory.mktemp("data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def start_server(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Server]]:
    """Start another server, on the built site or on `site`, with a --data folder of its own (all stopped at the end)."""
    started: list[Server] = []

    def start(site: Path | None = None) -> Server:
        started.append(Server(site or site_dir, tmp_path_factory.mktemp("data")).start())
        return started[-1]

    yield start
    for srv in started:
        srv.stop()
