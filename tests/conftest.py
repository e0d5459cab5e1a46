"""Fixtures shared by every test layer: the project, a built site, a real server on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server_process import ROOT, Server, free_port  # noqa: F401  (free_port, Server: for the tests)

_POSTGRES_SITE = Path(__file__).parent / "postgres_site"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--engine", choices=("sqlite", "postgresql"), default="sqlite",
                     help="where the server keeps its state in these tests: SQLite files (default) or a "
                          "throw-away PostgreSQL cluster, one database per data folder")


@pytest.fixture(scope="session", autouse=True)
def storage_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine under test. With PostgreSQL, a cluster for the session, and every process the
    tests start (this one included) maps each data folder to a database of its own."""
    engine = str(request.config.getoption("engine"))
    if engine == "sqlite":
        yield engine
        return
    from postgres_service import PostgresCluster

    with PostgresCluster() as cluster:
        saved = {key: os.environ.get(key) for key in ("WAYSTATION_TEST_POSTGRES", "PYTHONPATH")}
        os.environ["WAYSTATION_TEST_POSTGRES"] = cluster.admin_url
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_POSTGRES_SITE), saved["PYTHONPATH"]]))
        sys.path.insert(0, str(_POSTGRES_SITE))
        from folder_databases import install

        from waystation.server import storage

        install(cluster.admin_url)
        try:
            yield engine
        finally:
            storage.close_all()
            storage.default_url = storage._url_from_environment
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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
