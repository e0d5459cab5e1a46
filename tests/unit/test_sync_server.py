"""The sync server on 127.0.0.1 (`waystation serve`), driven by pycrdt replicas over real
WebSockets speaking the y-websocket protocol."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from pycrdt import (
    Array,
    Awareness,
    Doc,
    Text,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from waystation.server.storage import Storage

from server_process import Server

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
_users = itertools.count()


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(site, tmp_path_factory.mktemp("sync-data")).start()
    yield srv
    srv.stop()


def register(server: Server, user: str | None = None) -> tuple[str, str]:
    user = user or f"user{os.getpid()}x{next(_users)}"
    response = httpx.post(f"{server.url}/api/sync/register", json={"user": user, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return user, response.json()["token"]


class YClient:
    """A pycrdt replica connected to one room, speaking y-websocket like the JS provider."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.doc = Doc()
        self.items = self.doc.get("items", type=Array)
        self.text = self.doc.get("text", type=Text)
        self.received: list[bytes] = []
        self.step1_sent = self.step2_received = 0
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, server: Server, room: str, token: str | None) -> YClient:
        query = "" if token is None else f"?token={token}"
        url = f"ws://127.0.0.1:{server.port}/api/sync/ws/{room}{query}"
        client = cls(await websockets.connect(url, max_size=None))
        with contextlib.suppress(websockets.ConnectionClosed):  # refused already
            await client.send_step1()  # as y-websocket does on open
        return client

    async def send_step1(self) -> None:
        self.step1_sent += 1
        await self.ws.send(create_sync_message(self.doc))

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, bytes)
                self.received.append(message)
                if message[0] == 0:
                    reply = handle_sync_message(message[1:], self.doc)
                    if reply is not None:
                        await self.ws.send(reply)
                    elif message[1] == 1:
                        self.step2_received += 1
        except websockets.ConnectionClosed:
            pass

    def content(self) -> tuple[list[object], str]:
        return list(self.items), str(self.text)

    async def edit(self, change: Callable[[YClient], object]) -> None:
        """Make a local change and send it as one update."""
        state = self.doc.get_state()
        change(self)
        await self.ws.send(create_update_message(self.doc.get_update(state)))

    async def synced(self) -> None:
        """Round-trip a sync step 1: the server has applied all we sent and we have all it has."""
        await self.send_step1()
        await until(lambda: self.step2_received >= self.step1_sent)

    async def closed(self) -> int | None:
        await asyncio.wait_for(self.reader, 10)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def assert_still_syncing(a: YClient, b: YClient, value: object) -> None:
    await a.edit(lambda c: c.items.append(value))
    await until(lambda: value in list(b.items))


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 30))  # type: ignore[arg-type]


# --- accounts ---


def test_register_login_and_their_errors(server: Server) -> None:
    user, token = register(server)
    url = f"{server.url}/api/sync"
    assert httpx.post(f"{url}/register", json={"user": user, "password": PASSWORD}).status_code == 409
    login = httpx.post(f"{url}/login", json={"user": user, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["token"] != token
    assert httpx.post(f"{url}/login", json={"user": user, "password": "wrong password"}).status_code == 401
    assert httpx.post(f"{url}/login", json={"user": "nobody", "password": PASSWORD}).status_code == 401
    assert httpx.post(f"{url}/register", json={"user": "a/b", "password": PASSWORD}).status_code == 400
    assert httpx.post(f"{url}/register", json={"user": "shorty", "password": "short"}).status_code == 400
    assert httpx.post(f"{url}/register", content=b"not json").status_code == 400


# --- syncing ---


def test_two_clients_converge(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        a = await YClient.connect(server, f"{user}/notes", token)
        b = await YClient.connect(server, f"{user}/notes", token)
        await asyncio.gather(a.synced(), b.synced())
        await a.edit(lambda c: c.text.insert(0, "hello"))
        await b.edit(lambda c: c.items.extend([1, 2]))
        await a.edit(lambda c: c.items.append(3))
        await b.edit(lambda c: c.text.insert(0, ">> "))
        await until(lambda: a.content() == b.content() and len(a.items) == 3)
        assert str(a.text) == str(b.text) and str(a.text) in (">> hello", "hello>> ")
        assert sorted(a.items) == sorted(b.items) == [1, 2, 3]
        late = await YClient.connect(server, f"{user}/notes", token)
        await late.synced()
        assert str(late.text) == str(a.text) and list(late.items) == list(a.items)
        await asyncio.gather(a.close(), b.close(), late.close())

    run(scenario())


def test_awareness_is_relayed_and_removed_when_its_client_leaves(server: Server) -> None:
    user, token = register(server)
    awareness = Awareness(Doc())
    awareness.set_local_state({"n": 42})
    hello = create_awareness_message(awareness.encode_awareness_update([awareness.client_id]))

    async def scenario() -> None:
        a = await YClient.connect(server, f"{user}/cursors", token)
        b = await YClient.connect(server, f"{user}/cursors", token)
        await asyncio.gather(a.synced(), b.synced())
        await a.ws.send(hello)
        await until(lambda: hello in b.received)
        late = await YClient.connect(server, f"{user}/cursors", token)
        await late.synced()
        assert any(m[0] == 1 and b'{"n":42}' in m for m in late.received)
        await a.close()
        await until(lambda: any(m[0] == 1 and m.endswith(b"\x04null") for m in b.received))
        await asyncio.gather(b.close(), late.close())

    run(scenario())


def test_restart_between_edits_loses_nothing(site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def session(server: Server, token: str, room: str, value: int) -> list[int]:
        client = await YClient.connect(server, room, token)
        await client.synced()
        await client.edit(lambda c: c.items.append(value))
        await client.synced()
        seen = list(client.items)
        await client.close()
        return seen

    server = Server(site, data).start()
    user, token = register(server)
    try:
        assert asyncio.run(session(server, token, f"{user}/log", 1)) == [1]
    finally:
        server.stop()
    for value in (2, 3):
        server = Server(site, data).start()
        try:
            assert asyncio.run(session(server, token, f"{user}/log", value)) == list(range(1, value + 1))
        finally:
            server.stop()


# --- refusals, each while another pair of clients keeps syncing ---


def test_missing_wrong_token_and_foreign_room_are_closed_with_4401_4403(server: Server) -> None:
    user, token = register(server)
    other, _ = register(server)

    async def scenario() -> None:
        a = await YClient.connect(server, f"{user}/doc", token)
        b = await YClient.connect(server, f"{user}/doc", token)
        refusals = [
            (f"{user}/doc", None, 4401),
            (f"{user}/doc", "not-a-token", 4401),
            (f"{other}/doc", token, 4403),
            ("no-slash", token, 4400),
        ]
        for value, (room, bad_token, code) in enumerate(refusals):
            refused = await YClient.connect(server, room, bad_token)
            assert await refused.closed() == code
            assert refused.received[0][0] == 2  # y-protocols' permission-denied message came first
            await assert_still_syncing(a, b, value)
        await asyncio.gather(a.close(), b.close())

    run(scenario())


MALFORMED = {
    "unknown message type": b"\x07",
    "truncated sync message": b"\x00\x02\x10\x01\x02",
    "unknown sync step": b"\x00\x09\x00",
    "update that does not decode": b"\x00\x02\x05\xff\xff\xff\xff\xff",
    "state vector that does not decode": b"\x00\x00\x03\xff\xff\xff",
    "awareness state that is not JSON": b"\x01\x07\x01\x01\x01\x03{x}",
    "trailing bytes": b"\x00\x02\x02\x00\x00\x00",
    "empty message": b"",
    "text frame": "hello",
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_closes_only_its_sender_with_1003(server: Server, payload: bytes | str) -> None:
    user, token = register(server)

    async def scenario() -> None:
        a = await YClient.connect(server, f"{user}/doc", token)
        b = await YClient.connect(server, f"{user}/doc", token)
        bad = await YClient.connect(server, f"{user}/doc", token)
        await assert_still_syncing(a, b, "before")
        await bad.ws.send(payload)
        assert await bad.closed() == 1003
        await assert_still_syncing(a, b, "after")
        fresh = await YClient.connect(server, f"{user}/doc", token)
        await fresh.synced()
        assert list(fresh.items) == ["before", "after"]  # the document is as it was
        await asyncio.gather(a.close(), b.close(), fresh.close())

    run(scenario())


def test_oversized_message_closes_only_its_sender_with_1009(site: Path, tmp_path: Path) -> None:
    # A small limit and a message just over it: the whole message is written before the server
    # answers 1009, so the close frame is read, not lost to a reset mid-write (seen as 1006 with
    # a 1 MiB message on a loaded machine).
    srv = Server(site, tmp_path / "data", WAYSTATION_MAX_MESSAGE_BYTES="65536").start()
    try:
        user, token = register(srv)

        async def scenario() -> None:
            a = await YClient.connect(srv, f"{user}/doc", token)
            b = await YClient.connect(srv, f"{user}/doc", token)
            big = await YClient.connect(srv, f"{user}/doc", token)
            await big.edit(lambda c: c.text.insert(0, "x" * 70_000))
            assert await big.closed() == 1009
            await assert_still_syncing(a, b, "after")
            assert str(a.text) == str(b.text) == ""
            await asyncio.gather(a.close(), b.close())

        run(scenario())
    finally:
        srv.stop()


@pytest.fixture
def fast_server(site: Path, tmp_path: Path) -> Iterator[Server]:
    """A server that reads any client as fast as it sends (no bytes_per_second pacing)."""
    srv = Server(site, tmp_path / "data", WAYSTATION_BYTES_PER_SECOND="0").start()
    yield srv
    srv.stop()


def test_client_killed_while_its_room_sends_to_it_affects_nobody_else(fast_server: Server) -> None:
    server = fast_server
    user, token = register(server)

    async def kill(client: YClient) -> None:
        client.reader.cancel()  # stop reading: the server's sends to it pile up in flight
        sock = client.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        client.ws.transport.abort()

    async def scenario() -> None:
        a = await YClient.connect(server, f"{user}/doc", token)
        b = await YClient.connect(server, f"{user}/doc", token)
        await asyncio.gather(a.synced(), b.synced())
        for round in range(3):
            await a.edit(lambda c: c.text.__delitem__(slice(0, len(c.text))))  # stay under max_document_bytes
            victim = await YClient.connect(server, f"{user}/doc", token)
            await victim.synced()
            victim.reader.cancel()
            for i in range(40):  # 8 MB broadcast to a reader that has stopped: more than socket buffers hold
                await a.edit(lambda c, i=i, round=round: c.text.insert(0, f"{round}.{i}" + "y" * 200_000))
            await kill(victim)
            for i in range(40, 80):
                await a.edit(lambda c, i=i, round=round: c.text.insert(0, f"{round}.{i};"))
            await until(lambda: a.content() == b.content())
            await assert_still_syncing(a, b, round)
        other, other_token = register(server)
        elsewhere = await YClient.connect(server, f"{other}/doc", other_token)
        await elsewhere.synced()  # other rooms, and the server, are alive
        await asyncio.gather(a.close(), b.close(), elsewhere.close())

    run(scenario())


def test_many_clients_opening_one_new_room_at_once_all_sync(server: Server) -> None:
    user, token = register(server)
    n = 24

    async def scenario() -> None:
        clients = await asyncio.gather(*(YClient.connect(server, f"{user}/crowd", token) for _ in range(n)))
        await asyncio.gather(*(c.synced() for c in clients))
        await asyncio.gather(*(c.edit(lambda c, i=i: c.items.append(i)) for i, c in enumerate(clients)))
        await until(lambda: all(sorted(c.items) == list(range(n)) for c in clients))
        await asyncio.gather(*(c.close() for c in clients))

    run(scenario())


def test_sigterm_right_after_a_burst_keeps_every_edit(site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(site, data).start()
    user, token = register(server)

    async def burst() -> None:
        client = await YClient.connect(server, f"{user}/burst", token)
        await client.synced()
        for i in range(1000):
            await client.edit(lambda c, i=i: c.items.append(i))
        await client.synced()  # acknowledged: the server has applied all 1,000
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)  # while this client is still connected
        await client.closed()

    try:
        asyncio.run(asyncio.wait_for(burst(), 30))
        # uvicorn shuts down gracefully, then re-raises the signal: exit status -15.
        assert server.process is not None and server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        server.stop()

    restarted = Server(site, data).start()

    async def check() -> None:
        client = await YClient.connect(restarted, f"{user}/burst", token)
        await client.synced()
        assert list(client.items) == list(range(1000))
        await client.close()

    try:
        asyncio.run(asyncio.wait_for(check(), 30))
    finally:
        restarted.stop()
    with Storage.at(data).database("sync").transaction() as db:  # committed in groups: merged, not 1,000 rows
        assert db.execute("SELECT count(*) FROM sync_updates").fetchone()[0] < 500


# --- a real Yjs + y-websocket client (Node) ---

YJS_CLIENT = """
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import WebSocket from "ws";

const { SYNC_URL, SYNC_ROOM, SYNC_TOKEN } = process.env;
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\\n");
const finish = () => { provider.destroy(); doc.destroy(); };  // doc.destroy ends awareness' timer
const doc = new Y.Doc();
const text = doc.getText("text"), items = doc.getArray("items");
const provider = new WebsocketProvider(SYNC_URL, SYNC_ROOM, doc, {
  WebSocketPolyfill: WebSocket, disableBc: true, params: { token: SYNC_TOKEN },
});
provider.on("connection-close", (event) => {
  if (event && event.code >= 4400) {  // refused: retrying cannot help
    provider.shouldConnect = false;
    say({ closed: event.code });
    finish();
  }
});
provider.on("sync", (synced) => {
  if (!synced) return;
  say({ text: text.toString(), items: items.toArray() });
  provider.awareness.setLocalStateField("user", "node");
  doc.transact(() => { text.insert(text.length, " and yjs"); items.push([2]); });
  items.observe(() => {
    if (items.length === 3) {
      say({ text: text.toString(), items: items.toArray() });
      finish();
    }
  });
});
setTimeout(() => { say({ timeout: true }); process.exit(1); }, 15000).unref();
"""


def node_client(server: Server, room: str, token: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNC_URL": f"ws://127.0.0.1:{server.port}/api/sync/ws", "SYNC_ROOM": room,
           "SYNC_TOKEN": token}
    return subprocess.Popen(["node", "--input-type=module", "-e", YJS_CLIENT], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


needs_yjs = pytest.mark.skipif(
    not (ROOT / "node_modules/y-websocket").is_dir() or not (ROOT / "node_modules/yjs").is_dir(),
    reason="npm packages yjs and y-websocket are not installed (npm ci)",
)


@needs_yjs
def test_a_yjs_client_syncs_with_the_server(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        a = await YClient.connect(server, f"{user}/shared", token)
        await a.edit(lambda c: (c.text.insert(0, "pycrdt"), c.items.append(1)))
        await a.synced()
        node = node_client(server, f"{user}/shared", token)
        assert node.stdout is not None
        first = json.loads(await asyncio.to_thread(node.stdout.readline))
        assert first == {"text": "pycrdt", "items": [1]}
        await until(lambda: len(a.items) == 2)
        assert str(a.text) == "pycrdt and yjs" and list(a.items) == [1, 2]
        assert any(m[0] == 1 and b'"user":"node"' in m for m in a.received)  # its awareness came too
        await a.edit(lambda c: c.items.append(3))
        last = json.loads(await asyncio.to_thread(node.stdout.readline))
        assert last == {"text": "pycrdt and yjs", "items": [1, 2, 3]}
        assert await asyncio.to_thread(node.wait, 10) == 0
        await a.close()

    run(scenario())


@needs_yjs
def test_a_yjs_client_with_a_wrong_token_is_told_4401(server: Server) -> None:
    user, _ = register(server)
    node = node_client(server, f"{user}/shared", "wrong")
    out, _ = node.communicate(timeout=20)
    assert json.loads(out.splitlines()[0]) == {"closed": 4401}
