"""Fixtures shared by every test layer: the project, a built site, a real server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`waystation serve` in a child process, as a user would start it."""

    def __init__(self, site: Path, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site, self.data = site, data
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "waystation", "serve", "--port", str(self.port),
               "--site", str(self.site), "--data", str(self.data)]
        # Tests register from 127.0.0.1 many times a minute: the address budget is tested on its own.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000"}
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("waystation serve did not come up within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


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
