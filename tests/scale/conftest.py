"""Many `waystation serve` instances behind HAProxy, sharing one PostgreSQL database and one
Redis: every part a real process on 127.0.0.1, started by the fixtures here.

    def test_x(make_cluster):
        cluster = make_cluster(2)           # PostgreSQL database, Redis, 2 instances, HAProxy
        cluster.lb.url                      # what clients use
        cluster.instances[0].url            # one instance directly

Each instance has a data folder of its own and the same WAYSTATION_DATABASE and
WAYSTATION_PUBSUB, as on separate machines: nothing under --data is the only copy of anything.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from haproxy_service import HAProxy
from postgres_service import PostgresCluster
from redis_service import RedisServer

from server_process import Server

PASSWORD = "correct horse battery"
DRAIN_SECONDS = 4  # > HAProxy's fall x inter (2 x 1 s) plus a check interval: marked down before sockets close

# Every instance's settings. The per-address budgets are off: every request comes from
# HAProxy's 127.0.0.1. WAYSTATION_TEST_POSTGRES is blanked so that a run under
# `--engine postgresql` does not map each instance's folder to a database of its own.
INSTANCE_ENV = {
    "WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000",
    "WAYSTATION_TELEMETRY_REPORTS_PER_MINUTE": "0",
    "WAYSTATION_MESSAGES_PER_SECOND": "0",
    "WAYSTATION_DATABASE_POOL_SIZE": "4",
    "WAYSTATION_DATABASE_TIMEOUT": "2",
    "WAYSTATION_DRAIN_SECONDS": str(DRAIN_SECONDS),
    "WAYSTATION_TEST_POSTGRES": "",
}

_users = itertools.count()


class Cluster:
    """N instances, their database and Redis, and HAProxy in front."""

    def __init__(self, site: Path, root: Path, postgres: PostgresCluster, size: int, env: dict[str, str]) -> None:
        self.site, self.root, self.postgres = site, root, postgres
        self.database_url = postgres.new_database()
        self.redis: Any = None
        self.lb: HAProxy | None = None
        self.instances: list[Server] = []
        try:
            self._start(site, root, size, env)
        except BaseException:
            self.stop()  # what did start: nothing outlives a failed start
            raise

    def _start(self, site: Path, root: Path, size: int, env: dict[str, str]) -> None:
        self.redis = RedisServer().start()
        self.env = {**INSTANCE_ENV, "WAYSTATION_DATABASE": self.database_url, "WAYSTATION_PUBSUB": self.redis.url, **env}
        root.mkdir(parents=True, exist_ok=True)
        for i in range(size):
            instance = Server(site, self.folder_of(i), **self.env)
            instance.stderr_path = root / f"w{i + 1}.stderr"
            self.instances.append(instance)
            instance.start()
        self.lb = HAProxy([f"127.0.0.1:{s.port}" for s in self.instances], root / "haproxy").start()

    def folder_of(self, i: int) -> Path:
        return self.root / f"data{i + 1}"

    def name_of(self, instance: Server) -> str:
        return self.lb.name_of(f"127.0.0.1:{instance.port}")

    def instance_named(self, name: str) -> Server:
        return next(s for s in self.instances if self.name_of(s) == name)

    def health(self, instance: Server) -> tuple[int, dict[str, Any]]:
        response = httpx.get(f"{instance.url}/api/health", timeout=10)
        return response.status_code, response.json()

    def register(self, user: str | None = None) -> tuple[str, str]:
        user = user or f"u{os.getpid()}x{next(_users)}"
        response = httpx.post(f"{self.lb.url}/api/sync/register", json={"user": user, "password": PASSWORD}, timeout=30)
        assert response.status_code == 201, response.text
        return user, response.json()["token"]

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.stop()
        for instance in self.instances:
            with contextlib.suppress(Exception):
                instance.stop()
        if self.redis is not None:
            self.redis.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in site: `serve` builds nothing when boot.json exists, and these tests need no page."""
    site = tmp_path_factory.mktemp("stand-in-site")
    (site / "boot.json").write_text("{}")
    (site / "index.html").write_text("<!doctype html>")
    return site


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def make_cluster(site: Path, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(size: int = 2, **env: str) -> Cluster:
        made.append(Cluster(site, tmp_path / f"cluster{len(made)}", postgres, size, env))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()
