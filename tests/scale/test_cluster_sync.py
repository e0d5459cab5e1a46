"""Sync documents across instances behind HAProxy: clients on different instances converge, an
instance killed (SIGKILL) or stopped (SIGTERM) hands its clients to another through the load
balancer, and no acknowledged edit is lost (docs/server.md, "What an acknowledgement promises")."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from typing import Any

import httpx
import websockets
from yclient import Replica, until

SERVICE_RESTART = 1012


def run(coroutine: Awaitable[Any], timeout: float = 120) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))  # type: ignore[arg-type]


async def fresh_read(url: str, room: str, token: str) -> list[Any]:
    """The document as a new client joining through `url` gets it."""
    reader = Replica()
    await reader.connect(url, room, token)
    await reader.synced()
    values = reader.values()
    await reader.close()
    return values


async def burst(replica: Replica, start: int, ack_every: int, stop: asyncio.Event) -> None:
    """Append start, start+1, ... until the connection dies or `stop`; ask for an
    acknowledgement every `ack_every` edits."""
    value = start
    with contextlib.suppress(websockets.ConnectionClosed):
        while not stop.is_set():
            await replica.edit(value)
            value += 1
            if (value - start) % ack_every == 0 and not await replica.acknowledge():
                return
            await asyncio.sleep(0)


def test_requests_and_sockets_pass_through_the_load_balancer(make_cluster) -> None:
    cluster = make_cluster(2)
    assert set(cluster.lb.states().values()) == {"UP"}
    user, token = cluster.register()  # an account made through one instance works on every one

    async def scenario() -> None:
        a, b = Replica(), Replica()
        await a.connect(cluster.instances[0].url, f"{user}/plain", token)
        await b.connect(cluster.lb.url, f"{user}/plain", token)
        await asyncio.gather(a.synced(), b.synced())
        await a.edit("one")
        await a.synced()
        await b.close()
        assert await fresh_read(cluster.instances[1].url, f"{user}/plain", token) == ["one"]
        await a.close()

    run(scenario())


def test_clients_on_two_instances_converge_and_see_each_others_awareness(make_cluster) -> None:
    cluster = make_cluster(2)
    user, token = cluster.register()
    room = f"{user}/shared"

    async def scenario() -> None:
        a, b = Replica(), Replica()
        await a.connect(cluster.instances[0].url, room, token)
        await b.connect(cluster.instances[1].url, room, token)
        await asyncio.gather(a.synced(), b.synced())
        for i in range(20):  # interleaved edits from both sides
            await (a if i % 2 else b).edit(i)
        await until(lambda: len(a.values()) == 20 and len(b.values()) == 20, what="both to get all 20 edits")
        assert a.values() == b.values()
        hello = await a.send_awareness({"cursor": 7})
        await until(lambda: hello in b.received, what="awareness to cross instances")
        await asyncio.gather(a.close(), b.close())

    run(scenario())


def test_an_instance_killed_mid_burst_loses_no_acknowledged_edit(make_cluster) -> None:
    cluster = make_cluster(3)
    user, token = cluster.register()
    room = f"{user}/burst"

    async def scenario() -> None:
        writer, watcher = Replica(), Replica()
        await writer.connect(cluster.lb.url, room, token)
        await writer.synced()
        victim = cluster.lb.server_of(writer.local_port)
        assert victim is not None
        # The watcher keeps the room loaded on another instance, so what it holds after the
        # kill is what reached it from the victim, not a fresh load.
        other = next(s for s in cluster.instances if cluster.name_of(s) != victim)
        await watcher.connect(other.url, room, token)
        await watcher.synced()

        stop = asyncio.Event()
        writing = asyncio.create_task(burst(writer, 0, 7, stop))
        await until(lambda: len(writer.acknowledged) >= 100, 60, "100 acknowledged edits")
        killed = cluster.instance_named(victim)
        assert killed.process is not None
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait(timeout=10)
        await asyncio.wait_for(writing, 30)
        acknowledged = set(writer.acknowledged)
        assert acknowledged  # the kill came while edits were being acknowledged

        # Before the writer comes back (it would send everything again): every instance left
        # has every acknowledged edit, the one that had the room loaded and a fresh load alike.
        await until(lambda: acknowledged <= set(watcher.values()), what="the watcher to hold every acknowledged edit")
        for instance in cluster.instances:
            if instance is not killed:
                assert acknowledged <= set(await fresh_read(instance.url, room, token))

        # The writer reconnects through the load balancer (HAProxy retries the dead instance's
        # connection elsewhere) and its unacknowledged edits arrive too: nothing it made is lost.
        await writer.reconnect(cluster.lb.url, room, token)
        assert cluster.lb.server_of(writer.local_port) != victim
        await until(lambda: set(writer.made) <= set(watcher.values()), what="every edit to reach the watcher")
        await asyncio.gather(writer.close(), watcher.close())

    run(scenario())


def test_sigterm_drains_then_hands_clients_to_another_instance_with_no_lost_edit(make_cluster) -> None:
    cluster = make_cluster(2)
    user, token = cluster.register()
    room = f"{user}/handover"

    async def scenario() -> None:
        writer, watcher = Replica(), Replica()
        await writer.connect(cluster.lb.url, room, token)
        await writer.synced()
        leaving_name = cluster.lb.server_of(writer.local_port)
        assert leaving_name is not None
        leaving = cluster.instance_named(leaving_name)
        staying = next(s for s in cluster.instances if s is not leaving)
        await watcher.connect(staying.url, room, token)
        await watcher.synced()

        stop = asyncio.Event()
        writing = asyncio.create_task(burst(writer, 0, 5, stop))
        await until(lambda: len(writer.acknowledged) >= 50, 60, "50 acknowledged edits")
        assert leaving.process is not None
        leaving.process.send_signal(signal.SIGTERM)

        # Draining: the instance says so, HAProxy takes it out, and it still serves its socket.
        ready = await asyncio.to_thread(httpx.get, f"{leaving.url}/api/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["draining"] is True
        await asyncio.to_thread(cluster.lb.wait_for, leaving_name, "DOWN")
        assert writer.open
        before = len(writer.acknowledged)
        await until(lambda: len(writer.acknowledged) > before, what="an acknowledgement while draining")

        # Then it closes the socket with 1012 (service restart) and exits.
        assert await writer.closed() == SERVICE_RESTART
        await asyncio.wait_for(writing, 10)
        await asyncio.to_thread(leaving.process.wait, 30)

        await until(lambda: set(writer.acknowledged) <= set(watcher.values()), what="acknowledged edits on the other instance")
        await writer.reconnect(cluster.lb.url, room, token)
        assert cluster.lb.server_of(writer.local_port) == cluster.name_of(staying)
        await until(lambda: set(writer.made) <= set(watcher.values()), what="every edit to reach the watcher")
        assert set(writer.made) <= set(await fresh_read(cluster.lb.url, room, token))
        await asyncio.gather(writer.close(), watcher.close())

    run(scenario())


def test_a_logout_on_one_instance_closes_the_tokens_sockets_on_another(make_cluster) -> None:
    cluster = make_cluster(2)
    user, token = cluster.register()

    async def scenario() -> None:
        other = Replica()
        await other.connect(cluster.instances[1].url, f"{user}/revoked", token)
        await other.synced()
        response = await asyncio.to_thread(httpx.post, f"{cluster.instances[0].url}/api/sync/logout",
                                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200
        assert await other.closed(10) == 4401

    run(scenario())
