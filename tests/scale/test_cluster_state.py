"""State shared through PostgreSQL: a bundle published once is served alike by every instance,
and a database restart under load is reported, refused cleanly and recovered from without
restarting an instance."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import websockets
from yclient import Replica, until

from waystation.device import Manifest
from waystation.server.registry import bucket

from conftest import PASSWORD, Cluster
from server_process import ROOT

DEVICES = [f"device-{i}" for i in range(24)]


def waystation(*args: object, **env: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "waystation", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "WAYSTATION_TEST_POSTGRES": "", **env}, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def tiny_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """tiny 1.0.0 and 1.0.1 (its child), built and signed."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from tiny_bundle import write_source

    tmp = tmp_path_factory.mktemp("tiny")
    waystation("keys", "--out", tmp / "keys")
    source = write_source(tmp / "src")
    key = tmp / "keys" / "waystation.key"
    first = Path(waystation("bundle", "build", source, "--out", tmp / "out", "--key", key).stdout.strip())
    toml = (source / "bundle.toml").read_text().replace('version = "1.0.0"', 'version = "1.0.1"\nparent = "1.0.0"')
    (source / "bundle.toml").write_text(toml)
    with (source / "workflow.py").open("a") as f:
        f.write("\n# 1.0.1\n")
    second = Path(waystation("bundle", "build", source, "--out", tmp / "out", "--key", key).stdout.strip())
    return first, second


def test_a_bundle_published_once_is_served_alike_by_every_instance(make_cluster, tiny_builds, tmp_path: Path) -> None:
    cluster = make_cluster(3)
    # The command line writes to the database, not to any instance: its --data folder is its own
    # (or, while some state still lives in files, the folder the instances share).
    data = tmp_path / "cli-data"  # the command line's own folder: the state is the database's
    env = {"WAYSTATION_DATABASE": cluster.database_url}
    first, second = tiny_builds
    waystation("bundle", "publish", first, "--channel", "stable", "--data", data, **env)
    waystation("bundle", "publish", second, "--channel", "stable", "--rollout", "50", "--data", data, **env)

    expected = {d: "1.0.1" if bucket(d, "tiny", "1.0.1") < 50 else "1.0.0" for d in DEVICES}
    assert set(expected.values()) == {"1.0.0", "1.0.1"}  # the devices chosen land on both sides
    for instance in cluster.instances:
        for device in DEVICES:
            response = httpx.get(f"{instance.url}/api/bundles/tiny/channels/stable", params={"device": device}, timeout=30)
            assert response.status_code == 200, response.text
            manifest = Manifest.from_json(response.content)
            assert manifest.version == expected[device], (instance.url, device)
        # and every chunk of both versions, which only the database holds
        for build in tiny_builds:
            for sha in Manifest.from_json((build / "manifest.json").read_bytes()).chunks():
                chunk = httpx.get(f"{instance.url}/chunks/{sha}", timeout=30)
                assert chunk.status_code == 200, (instance.url, sha, chunk.text[:200])


def _register(url: str, user: str) -> int:
    try:
        return httpx.post(f"{url}/api/sync/register", json={"user": user, "password": PASSWORD}, timeout=30).status_code
    except httpx.TransportError:
        return 0


def test_a_database_restart_under_load_is_reported_refused_cleanly_and_recovered_from(make_cluster, postgres) -> None:
    cluster: Cluster = make_cluster(2)
    user, token = cluster.register()
    room = f"{user}/through-outage"
    outcomes: dict[str, int] = {}  # registrations made all along: user -> status
    stop = threading.Event()

    def registering() -> None:
        for i in range(100_000):
            if stop.is_set():
                return
            name = f"load{os.getpid()}x{i}"
            outcomes[name] = _register(cluster.lb.url, name)

    async def scenario() -> None:
        writer = Replica()
        await writer.connect(cluster.lb.url, room, token)
        await writer.synced()

        async def write() -> None:
            value = 0
            with contextlib.suppress(websockets.ConnectionClosed):
                while not stopped.is_set():
                    await writer.edit(value)
                    value += 1
                    await asyncio.sleep(0.02)

        stopped = asyncio.Event()
        load = threading.Thread(target=registering)
        load.start()
        writing = asyncio.create_task(write())
        await until(lambda: len(writer.made) >= 20, what="edits before the outage")

        await asyncio.to_thread(postgres.stop)
        try:
            for instance in cluster.instances:  # each reports it, and stays in the load balancer
                await until(lambda i=instance: cluster.health(i)[0] == 503, 30, "health to report the outage")
                _status, report = cluster.health(instance)
                assert report["database"]["ok"] is False and report["database"]["engine"] == "postgresql", report
                ready = httpx.get(f"{instance.url}/api/health/ready", timeout=10)
                assert ready.status_code == 200
            assert set(cluster.lb.states().values()) == {"UP"}
            refused = httpx.post(f"{cluster.lb.url}/api/sync/register", json={"user": f"down{os.getpid()}", "password": PASSWORD},
                                 timeout=30)
            assert refused.status_code == 503 and refused.json()["error"] == "database-unavailable", refused.text
            assert "retry-after" in refused.headers
            assert writer.open  # sockets stay open through the outage
        finally:
            await asyncio.to_thread(postgres.start)

        for instance in cluster.instances:  # back without a restart
            await until(lambda i=instance: cluster.health(i)[0] == 200, 60, "health to recover")
        stopped.set()
        stop.set()
        await asyncio.wait_for(writing, 10)
        await asyncio.to_thread(load.join, 60)
        if writer.open:
            await writer.synced(60)  # everything written during the outage is stored now
        else:
            await writer.reconnect(cluster.lb.url, room, token)
        reader = Replica()
        await reader.connect(cluster.instances[1].url, room, token)
        await reader.synced()
        assert set(writer.made) <= set(reader.values())
        await asyncio.gather(writer.close(), reader.close())

    asyncio.run(asyncio.wait_for(scenario(), 240))
    refused = [name for name, status in outcomes.items() if status != 201]
    assert refused and len(refused) < len(outcomes), json.dumps(outcomes)[:2000]
    assert {outcomes[name] for name in refused} <= {503}, {outcomes[name] for name in refused}
    # Nothing half-written: an account whose registration was refused does not exist at all
    # (registering it again works), and every one that was accepted can log in.
    for name in refused[:20]:
        assert _register(cluster.lb.url, name) == 201, name
    for name in [n for n, s in outcomes.items() if s == 201][-5:]:
        login = httpx.post(f"{cluster.lb.url}/api/sync/login", json={"user": name, "password": PASSWORD}, timeout=30)
        assert login.status_code == 200, login.text


def test_an_instance_keeps_no_state_of_its_own_under_data(make_cluster) -> None:
    """Every store is in the shared database: an instance's --data holds caches at most, so losing
    a machine loses nothing, and a new instance starts from an empty folder."""
    cluster: Cluster = make_cluster(2)
    _user, token = cluster.register()
    for instance in cluster.instances:  # each one writes: the account's token renewed
        assert httpx.post(f"{instance.url}/api/sync/renew", headers={"Authorization": f"Bearer {token}"},
                          timeout=30).status_code == 200
    for i in range(len(cluster.instances)):
        assert list(cluster.folder_of(i).glob("*.sqlite3*")) == [], cluster.folder_of(i)
