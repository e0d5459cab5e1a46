"""Rooms across instances: two `waystation serve` processes on one shared store (a data folder's
SQLite files, or its PostgreSQL database with --engine postgresql) and one real redis-server;
pycrdt replicas on different instances edit one document over real WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Awareness, Doc, Text, create_awareness_message
from redis_service import RedisServer, redis_server_binary

from waystation.server._urls import redacted as redact
from waystation.server.sync import fanout as fanout_module
from waystation.server.sync.client import Client
from waystation.server.sync.fanout import Fanout
from waystation.server.sync.protocol import encode_update
from waystation.server.sync.rooms import Room

from server_process import ROOT, Server
from test_sync_server import YClient, register, run, until

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture()
def pair(site: Path, tmp_path: Path, redis: RedisServer) -> Iterator[tuple[Server, Server]]:
    """Two instances on one data folder, meeting through `redis`."""
    data = tmp_path / "data"
    first = Server(site, data, WAYSTATION_PUBSUB=redis.url).start()
    second = Server(site, data, WAYSTATION_PUBSUB=redis.url)
    second.stderr_path = tmp_path / "second.stderr"
    try:
        yield first, second.start()
    finally:
        second.stop()
        first.stop()


def test_clients_on_two_instances_converge(pair: tuple[Server, Server]) -> None:
    one, two = pair
    user, token = register(one)
    room = f"{user}/shared"

    async def scenario() -> None:
        a = await YClient.connect(one, room, token)
        b = await YClient.connect(two, room, token)
        await asyncio.gather(a.synced(), b.synced())
        await a.edit(lambda c: c.text.insert(0, "hello"))
        await until(lambda: str(b.text) == "hello")  # relayed live, not on a later sync
        await b.edit(lambda c: c.items.extend([1, 2]))
        await a.edit(lambda c: c.items.append(3))
        for n in range(20):  # interleaved, concurrent edits on both sides
            await asyncio.gather(a.edit(lambda c, n=n: c.items.append(100 + n)),
                                 b.edit(lambda c, n=n: c.text.insert(0, str(n % 10))))
        await until(lambda: a.content() == b.content() and len(a.items) == 23 and len(str(a.text)) == 25)
        assert sorted(a.items) == sorted(b.items) == sorted([1, 2, 3, *range(100, 120)])
        late = await YClient.connect(two, room, token)  # joins the copy already in `two`'s memory
        await late.synced()
        assert late.content() == a.content()
        await asyncio.gather(a.close(), b.close(), late.close())
        fresh = await YClient.connect(one, room, token)  # a room loaded anew, from the shared store
        await fresh.synced()
        assert sorted(fresh.items) == sorted(a.items) and str(fresh.text) == str(a.text)
        await fresh.close()

    run(scenario())


def test_awareness_crosses_instances(pair: tuple[Server, Server]) -> None:
    one, two = pair
    user, token = register(one)
    room = f"{user}/cursors"
    awareness = Awareness(Doc())
    awareness.set_local_state({"cursor": 7})
    hello = create_awareness_message(awareness.encode_awareness_update([awareness.client_id]))

    def saw_left(client: YClient) -> bool:
        return any(m[0] == 1 and m.endswith(b"\x04null") for m in client.received)

    async def scenario() -> None:
        a = await YClient.connect(one, room, token)
        b = await YClient.connect(two, room, token)
        await asyncio.gather(a.synced(), b.synced())
        await a.ws.send(hello)
        await until(lambda: any(m[0] == 1 and b'{"cursor":7}' in m for m in b.received))
        late = await YClient.connect(two, room, token)  # sees a's presence from `two`'s copy
        await late.synced()
        assert any(m[0] == 1 and b'{"cursor":7}' in m for m in late.received)
        await a.close()  # its instance tells the other that it left
        await until(lambda: saw_left(b) and saw_left(late))
        await asyncio.gather(b.close(), late.close())

    run(scenario())


def test_rooms_resync_after_redis_restarts(pair: tuple[Server, Server], redis: RedisServer) -> None:
    one, two = pair
    user, token = register(one)
    room = f"{user}/outage"

    async def scenario() -> None:
        a = await YClient.connect(one, room, token)
        b = await YClient.connect(two, room, token)
        await asyncio.gather(a.synced(), b.synced())
        await a.edit(lambda c: c.items.append("before"))
        await until(lambda: list(b.items) == ["before"])
        redis.stop()
        # Each instance goes on serving its own clients, acknowledging what they send.
        await a.edit(lambda c: c.items.append("a-during"))
        await b.edit(lambda c: c.text.insert(0, "b-during"))
        await asyncio.gather(a.synced(), b.synced())
        other = await YClient.connect(one, room, token)  # a new client of a held room, meanwhile
        await other.synced()
        assert "a-during" in list(other.items)
        redis.start()  # same port; nothing of the old one survives
        await until(lambda: a.content() == b.content() == other.content()
                    and sorted(a.items) == ["a-during", "before"] and str(a.text) == "b-during", timeout=30)
        await a.edit(lambda c: c.items.append("after"))  # and live relaying is back
        await until(lambda: "after" in list(b.items), timeout=30)
        await asyncio.gather(a.close(), b.close(), other.close())

    asyncio.run(asyncio.wait_for(scenario(), 90))
    assert "Redis at redis://127.0.0.1" in one.stderr()  # the outage was logged


def test_a_hung_redis_is_noticed_and_rooms_resync_once_it_answers(pair: tuple[Server, Server], redis: RedisServer,
                                                                  tmp_path: Path) -> None:
    """SIGSTOP: no error, no closed connection, only silence; the fanout's pings find it out."""
    one, two = pair
    user, token = register(one)
    room = f"{user}/hung"

    async def scenario() -> None:
        from waystation.server.sync import sync_endpoint

        watcher, lifespan = sync_endpoint(tmp_path / "watcher", pubsub=redis.url)  # its status: as /api/health shows it

        def connected() -> bool:
            return bool((watcher.pubsub_status() or {}).get("connected"))

        async with lifespan(None):
            a = await YClient.connect(one, room, token)
            b = await YClient.connect(two, room, token)
            await asyncio.gather(a.synced(), b.synced())
            await until(connected)
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            try:
                await a.edit(lambda c: c.items.append("a-hung"))
                await b.edit(lambda c: c.items.append("b-hung"))
                await until(lambda: not connected(), timeout=60)
            finally:
                redis.process.send_signal(signal.SIGCONT)
            await until(connected, timeout=30)
            await until(lambda: a.content() == b.content() and sorted(a.items) == ["a-hung", "b-hung"], timeout=60)
            await asyncio.gather(a.close(), b.close())

    asyncio.run(asyncio.wait_for(scenario(), 150))


def test_without_pubsub_nothing_of_redis_is_imported(tmp_path: Path) -> None:
    code = ("import sys, os; os.environ.pop('WAYSTATION_PUBSUB', None)\n"
            "from pathlib import Path\n"
            "from waystation.server.sync import sync_endpoint\n"
            f"endpoint, _ = sync_endpoint(Path({str(tmp_path)!r}))\n"
            "assert endpoint.pubsub_status() is None\n"
            "assert not any(name == 'redis' or name.startswith('redis.') for name in sys.modules), 'redis imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_pubsub_status_hides_the_password(redis: RedisServer, tmp_path: Path) -> None:
    assert redact("redis://:secret@cache:6380/0") == "redis://:***@cache:6380/0"
    assert redact("redis://app:secret@cache/2") == "redis://app:***@cache/2"
    assert redact(redis.url) == redis.url

    async def scenario() -> None:
        from waystation.server.sync import sync_endpoint

        endpoint, lifespan = sync_endpoint(tmp_path, pubsub=redis.url)
        assert endpoint.pubsub_status() == {"url": redis.url, "connected": False}  # not started yet
        assert endpoint.fanout is not None and endpoint.fanout.prefix == "waystation:sync:0:"
        other, _ = sync_endpoint(tmp_path, pubsub=redis.url[:-1] + "1")  # pub/sub is server-wide: kept apart
        assert other.fanout is not None and other.fanout.prefix == "waystation:sync:1:"
        async with lifespan(None):
            await until(lambda: (endpoint.pubsub_status() or {}).get("connected") is True)

    asyncio.run(scenario())


class _Recorder:
    """A Listener that notes which rooms were told to catch up with the store."""

    def __init__(self) -> None:
        self.resynced: list[str] = []

    def remote(self, room: str, kind: Any, payload: bytes) -> None:
        pass

    def subscribed(self, room: str) -> None:
        self.resynced.append(room)


def test_an_instance_that_goes_silent_makes_the_others_reload_their_rooms(redis: RedisServer,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """It may have died (SIGKILL) between committing an update and publishing it: the update is only
    in the store. One that leaves saying so (a graceful shutdown, everything published) costs no reload."""
    monkeypatch.setattr(fanout_module, "_PING_SECONDS", 0.2)
    monkeypatch.setattr(fanout_module, "_SILENCE_SECONDS", 1.0)

    async def scenario() -> None:
        listener = _Recorder()
        watcher = Fanout(redis.url, listener)
        leaving, dying = Fanout(redis.url, _Recorder()), Fanout(redis.url, _Recorder())
        for fanout in (watcher, leaving, dying):
            fanout.start()
        await watcher.subscribe("u/doc")
        await until(lambda: len(watcher._peers) == 2)
        listener.resynced.clear()  # the subscription's own confirmation
        await leaving.close()  # says goodbye: forgotten, no reload
        await until(lambda: len(watcher._peers) == 1)
        await asyncio.sleep(1.5)
        assert listener.resynced == []
        for task in dying._tasks:  # dies: no goodbye, no more "alive"
            task.cancel()
        await until(lambda: listener.resynced == ["u/doc"])
        assert watcher._peers == {}
        await watcher.close()
        with contextlib.suppress(Exception):
            await dying._client.aclose()
            await dying._publisher.aclose()

    asyncio.run(scenario())


# --- a room's side of it, without servers ---


class _Durable:
    """A store whose every batch is durable: these rooms take remote updates only (never stored here)."""

    def is_durable(self, batch: int) -> bool:
        return True


def _room() -> tuple[Room, Client]:
    room = Room("u/doc", _Durable())  # type: ignore[arg-type]
    client = Client(None, "u")  # type: ignore[arg-type]  # a room only queues to its clients
    room.clients.add(client)
    return room, client


def _updates(edits: int) -> tuple[Doc[Any], list[bytes]]:
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates = []
    for n in range(edits):
        state = doc.get_state()
        text.insert(len(text), str(n))
        updates.append(doc.get_update(state))
    return doc, updates


def _outbox(client: Client) -> list[bytes]:
    return [client._next() for _ in range(len(client._outbox))]


def test_a_remote_update_after_a_gap_asks_for_a_resync_and_catch_up_fills_it() -> None:
    room, client = _room()
    doubts: list[str] = []
    room.doubt = lambda: doubts.append(room.name)
    doc, updates = _updates(3)
    room.take_remote(updates[0])
    assert _outbox(client) == [encode_update(updates[0])]
    room.take_remote(updates[2])  # updates[1] was lost on the way
    assert doubts == ["u/doc"] and _outbox(client) == []
    assert room.catch_up(doc)  # what the store holds
    assert str(room.doc.get("text", type=Text)) == "012"
    (message,) = _outbox(client)
    replica: Doc[Any] = Doc()
    replica.apply_update(updates[0])
    replica.apply_update(message[3:])  # what the client was sent brings it level (varint length < 128)
    assert str(replica.get("text", type=Text)) == "012"
    assert not room.catch_up(doc) and _outbox(client) == []  # level: nothing sent


def test_catch_up_sends_a_lost_deletion() -> None:
    room, client = _room()
    doc, updates = _updates(2)
    for update in updates:
        room.take_remote(update)
    _outbox(client)
    text = doc.get("text", type=Text)
    del text[0:1]  # a deletion only: the state vector does not move
    assert room.catch_up(doc)
    assert str(room.doc.get("text", type=Text)) == "1" and len(_outbox(client)) == 1
    assert not room.catch_up(doc)


def test_remote_awareness_not_renewed_is_forgotten_when_someone_joins() -> None:
    room, client = _room()
    awareness = Awareness(Doc())
    awareness.set_local_state({"cursor": 1})
    room.take_remote_awareness(create_awareness_message(awareness.encode_awareness_update([awareness.client_id])))
    assert [entry.client_id for entry in room.awareness.current()] == [awareness.client_id]
    room._remote_seen[awareness.client_id] -= 3600  # its instance died an hour ago without a word
    late = Client(None, "u")  # type: ignore[arg-type]
    room.join(late)
    assert room.awareness.current() == []
    assert any(m.endswith(b"\x04null") for m in _outbox(client))  # the others are told it left
