"""/api/health and /api/health/ready (waystation.server.health): what each reports, and that a
database that does not answer never holds a check past its timeout nor piles up pings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from waystation import __version__
from waystation.server.health import Drain, health_routes
from waystation.server.storage import Storage, Unavailable


def client(ping: Callable[[], None] | None, drain: Drain | None = None,
           pubsub: Callable[[], Mapping[str, Any] | None] | None = None, timeout: float = 2.0) -> TestClient:
    routes = health_routes(ping=ping, engine="postgresql", drain=drain or Drain(), pubsub_status=pubsub,
                           ping_timeout=timeout)
    return TestClient(Starlette(routes=routes))


def test_a_working_instance_reports_everything_and_is_ready(tmp_path) -> None:
    db = Storage.at(tmp_path).database("registry")  # a real SQLite database's ping
    with client(db.ping, pubsub=lambda: {"url": "redis://app:secret@redis:6379/0", "connected": True}) as http:
        health = http.get("/api/health")
        assert health.status_code == 200 and health.headers["cache-control"] == "no-store"
        assert health.json() == {"ok": True, "waystation": __version__, "draining": False,
                                 "database": {"engine": "postgresql", "ok": True},
                                 "pubsub": {"url": "redis://app:***@redis:6379/0", "connected": True}}
        assert http.get("/api/health/ready").json() == {"ready": True, "draining": False}


def test_no_pubsub_configured_is_reported_as_none_and_is_fine() -> None:
    with client(None, pubsub=lambda: None) as http:
        health = http.get("/api/health")
        assert health.status_code == 200 and health.json()["pubsub"] is None


def test_a_database_that_refuses_is_503_on_health_but_the_instance_stays_ready() -> None:
    def down() -> None:
        raise Unavailable("PostgreSQL: connection refused")

    with client(down) as http:
        health = http.get("/api/health")
        assert health.status_code == 503
        assert health.json()["ok"] is False
        assert health.json()["database"] == {"engine": "postgresql", "ok": False, "error": "PostgreSQL: connection refused"}
        assert http.get("/api/health/ready").status_code == 200  # the load balancer keeps it (module docstring)


def test_a_database_that_hangs_costs_one_ping_and_each_check_its_timeout_at_most() -> None:
    release, calls = threading.Event(), []

    def hangs() -> None:
        calls.append(1)
        release.wait(30)

    with client(hangs, timeout=0.2) as http:
        for _ in range(3):
            health = http.get("/api/health")
            assert health.status_code == 503
            assert health.json()["database"]["error"] == "no answer within 0.2 s"
        assert len(calls) == 1  # the checks waited on the one ping in flight, none started another
        release.set()
        answered = http.get("/api/health")
        assert answered.status_code == 200, answered.json()


def test_a_pubsub_that_lost_redis_is_503_on_health() -> None:
    with client(None, pubsub=lambda: {"url": "redis://r:6379/0", "connected": False}) as http:
        health = http.get("/api/health")
        assert health.status_code == 503 and health.json()["pubsub"]["connected"] is False
        assert http.get("/api/health/ready").status_code == 200


def test_a_draining_instance_is_not_ready_and_says_so() -> None:
    drain = Drain()
    with client(None, drain=drain) as http:
        drain.start()
        ready = http.get("/api/health/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False, "draining": True}
        health = http.get("/api/health")
        assert health.status_code == 503 and health.json()["draining"] is True
