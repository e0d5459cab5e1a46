"""The limits of `waystation serve`'s HTTP layer, under attack, against the real server.

Each test starts `waystation serve` in a child process with its limits set small through the
environment, runs the attack at a size that takes seconds, and asserts both the refusal and
that a control client, connected before the attack, keeps its round trip under a bound.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from waystation.bundles.signing import dev_key
from waystation.server.admin_auth import AdminTokens
from waystation.server.registry import Registry

from bundle_factory import make_bundle
from http_server import Server, read_response

_names = itertools.count()
MB = 1 << 20


@pytest.fixture
def start(site: Path, tmp_path: Path) -> Iterator[object]:
    """Start `waystation serve` with the given settings (and open-files limit); stopped after the test."""
    started: list[Server] = []

    def start_server(open_files: tuple[int, int] | None = None, **settings: object) -> Server:
        env = {f"WAYSTATION_{name.upper()}": str(value) for name, value in settings.items()}
        started.append(Server(site, tmp_path / f"data{len(started)}", open_files, **env).start())
        return started[-1]

    yield start_server
    for server in started:
        server.stop()


class Control:
    """A well-behaved client, connected (keep-alive) before the attack, timing its round trips."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=10)
        self.times: list[float] = []
        self.round_trip()

    def round_trip(self) -> float:
        began = time.monotonic()
        response = self.client.get("/api/health")
        assert response.status_code == 200, response.text
        self.times.append(time.monotonic() - began)
        return self.times[-1]

    async def probe_for(self, seconds: float) -> None:
        """Round trips, one every 0.1 s, for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.to_thread(self.round_trip)
            await asyncio.sleep(0.1)

    def close(self) -> None:
        self.client.close()


async def _closed_after(reader: asyncio.StreamReader, began: float, wait: float) -> float | None:
    """Seconds from `began` until the server closed the connection, or None if it is still open after `wait`."""
    try:
        await asyncio.wait_for(reader.read(1), wait)
    except (ConnectionError, OSError):
        pass
    except TimeoutError:
        return None
    return time.monotonic() - began


async def _trickle(port: int, wait: float) -> float | None:
    """A request head sent a header every 0.2 s, never finished; seconds until the server closed it."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = asyncio.ensure_future(_closed_after(reader, began, wait))
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for n in itertools.count():
            if closed.done() or time.monotonic() - began > wait:
                break
            writer.write(b"X-Slow-%d: y\r\n" % n)
            await writer.drain()
            await asyncio.sleep(0.2)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return await closed


def _refusals(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Too many open files" in line or "Traceback" in line]


def test_idle_and_trickling_connections_are_closed_while_others_are_served(start) -> None:
    server = start(max_connections=200, header_timeout=1)
    control = Control(server)

    async def attack() -> tuple[list[float | None], list[float | None]]:
        tricklers = asyncio.gather(*(_trickle(server.port, 6) for _ in range(100)))  # first: under the cap
        await asyncio.sleep(0.2)
        began = time.monotonic()
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(400)]  # past the cap
        idle_closed = asyncio.gather(*(_closed_after(reader, began, 6) for reader, _ in idle))
        await control.probe_for(3)
        closed = await idle_closed, await tricklers
        for _, writer in idle:
            writer.close()
        return closed

    idle, trickled = asyncio.run(asyncio.wait_for(attack(), 30))
    control.close()
    print(f"idle closed after max {max(t or 99 for t in idle):.2f}s, trickling after max "
          f"{max(t or 99 for t in trickled):.2f}s; control worst {max(control.times):.3f}s")
    assert all(t is not None and t < 3.5 for t in idle), f"idle connections closed late or never: {idle}"
    # Closed by the header timeout, though they kept sending: not at once (the cap), nor never.
    assert all(t is not None and 0.8 < t < 3.5 for t in trickled), trickled
    assert max(control.times) < 1.0, control.times
    assert httpx.get(f"{server.url}/api/health", timeout=5).status_code == 200  # the slots are free again
    stderr = server.stderr()
    assert not _refusals(stderr) and len(stderr) < 10_000, stderr[-2000:]


def test_connections_never_exhaust_a_low_open_files_limit(start) -> None:
    server = start(open_files=(512, 512))  # the default max_connections (2000) cannot fit
    control = Control(server)

    async def connect() -> asyncio.StreamWriter | None:
        try:  # a full listen queue drops some: the attacker's problem
            return (await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), 3))[1]
        except (OSError, TimeoutError):
            return None

    async def attack() -> tuple[int, int]:
        connecting = asyncio.gather(*(connect() for _ in range(800)))
        await control.probe_for(2)
        descriptors = server.open_descriptors()
        writers = await connecting
        for writer in writers:
            if writer is not None:
                writer.close()
        return descriptors, sum(writer is not None for writer in writers)

    descriptors, connected = asyncio.run(asyncio.wait_for(attack(), 30))
    control.close()
    print(f"{connected} of 800 connected; server descriptors {descriptors}; control worst {max(control.times):.3f}s")
    stderr = server.stderr()
    assert not _refusals(stderr) and len(stderr) < 10_000, stderr[-2000:]
    assert descriptors < 400
    assert max(control.times) < 1.0, control.times
    assert "max_connections lowered from 2000 to 192: only 512 open files allowed" in stderr


def test_the_open_files_soft_limit_is_raised_to_the_hard_limit(start) -> None:
    server = start(open_files=(256, 4096))
    limits = Path(f"/proc/{server.pid}/limits").read_text()
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == ["4096", "4096"], line


def test_a_body_sent_too_slowly_is_cut_off(start) -> None:
    server = start(body_timeout=1)
    control = Control(server)

    async def attack() -> float | None:
        began = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /api/sync/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        closed = asyncio.ensure_future(_closed_after(reader, began, 6))
        prober = asyncio.ensure_future(control.probe_for(2))
        try:
            while not closed.done() and time.monotonic() - began < 6:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.2)
        except (ConnectionError, OSError):
            pass
        await prober
        writer.close()
        return await closed

    closed_after = asyncio.run(asyncio.wait_for(attack(), 30))
    control.close()
    print(f"slow body closed after {closed_after}s; control worst {max(control.times):.3f}s")
    assert closed_after is not None and closed_after < 3
    assert max(control.times) < 1.0, control.times


def test_an_idle_keep_alive_connection_is_closed(start) -> None:
    server = start(idle_timeout=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(s)[0] == 200
        answered = time.monotonic()
        assert s.recv(1) == b""  # closed by the server
        idle = time.monotonic() - answered
    print(f"keep-alive connection closed after {idle:.2f}s idle")
    assert 0.5 < idle < 2.5


def _ws_frame(s: socket.socket) -> int | None:
    """The opcode of the next frame the server sends (its payload skipped), None when it closed."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    try:
        first, second = exactly(2)
        length = second & 0x7F
        if length >= 126:
            (length,) = struct.unpack("!H" if length == 126 else "!Q", exactly(2 if length == 126 else 8))
        exactly(length)
    except (ConnectionError, OSError):
        return None
    return first & 0x0F


def test_a_websocket_peer_that_does_not_answer_pings_is_dropped(start) -> None:
    server = start(ws_ping_seconds=0.5)
    user = f"pinged{os.getpid()}x{next(_names)}"
    response = httpx.post(f"{server.url}/api/sync/register", json={"user": user, "password": "correct horse battery"})
    assert response.status_code == 201, response.text
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET /api/sync/ws/{user}/notes?token={response.json()['token']} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        began, first_ping = time.monotonic(), None
        while (opcode := _ws_frame(s)) not in (None, 0x8):  # read on, never answering a ping
            if opcode == 0x9 and first_ping is None:
                first_ping = time.monotonic() - began
        dropped = time.monotonic() - began
    print(f"first ping after {first_ping}s; dropped after {dropped:.2f}s")
    assert first_ping is not None and first_ping < 1.5
    assert dropped < 3.0


def _upload(port: int, path: str, size: int, chunked: bool) -> tuple[int, bytes, float, int]:
    """POST `size` bytes (announced, or chunked), reading the answer as soon as it comes: status, body, seconds, bytes sent."""
    began = time.monotonic()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
        piece = b" " * (64 << 10)
        frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
        sent, answer = 0, b""
        s.setblocking(False)
        while b"\r\n\r\n" not in answer:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
                continue
            except BlockingIOError:
                pass
            if sent >= size:
                time.sleep(0.01)
                continue
            try:
                sent += s.send(frame) and len(piece)
            except BlockingIOError:
                time.sleep(0.001)
        s.settimeout(10)
        status, _, body = read_response(_Replay(answer, s))  # type: ignore[arg-type]
    return status, body, time.monotonic() - began, sent


class _Replay:
    """A socket whose first recv returns bytes already read."""

    def __init__(self, data: bytes, s: socket.socket) -> None:
        self.data, self.s = data, s

    def recv(self, n: int) -> bytes:
        data, self.data = self.data, b""
        return data or self.s.recv(n)


def test_large_bodies_are_refused_at_once_in_bounded_memory(start) -> None:
    server = start()  # max_body_bytes: 64 KiB, the default
    assert _upload(server.port, "/api/sync/login", MB, chunked=False)[0] == 413  # warm-up, before the peak is read
    peak_before = server.memory_mb("VmHWM")
    control = Control(server)
    uploads = [("/api/sync/login", False), ("/api/sync/register", False), ("/api/sync/login", True),
               ("/api/sync/register", True)]
    results: list[tuple[int, bytes, float, int]] = []

    def upload(path: str, chunked: bool) -> None:
        results.append(_upload(server.port, path, 50 * MB, chunked))

    threads = [threading.Thread(target=upload, args=upload_args) for upload_args in uploads]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        control.round_trip()
        time.sleep(0.1)
    control.close()
    growth = server.memory_mb("VmHWM") - peak_before
    print(f"4 x 50 MB: {[(status, round(seconds, 2), sent >> 20) for status, _, seconds, sent in results]}; "
          f"peak RSS grew {growth:.1f} MB; control worst {max(control.times):.3f}s")
    assert len(results) == 4
    for status, body, seconds, sent in results:
        assert status == 413, body
        assert "larger than 65536 bytes" in json.loads(body)["error"]
        assert seconds < 3 and sent < 25 * MB  # answered long before the body was through
    assert growth < 40, f"the server's peak memory grew by {growth:.0f} MB"
    assert max(control.times) < 1.0, control.times


def test_a_locked_registry_does_not_stall_other_requests(start, tmp_path: Path, storage_engine: str) -> None:
    server = start()
    token = AdminTokens(server.data).make()
    registry = Registry(server.data)
    registry.publish(make_bundle(tmp_path, dev_key(), "demo", "1.0.0"), "stable", 100)
    control = Control(server)
    # A write waits for the registry's lock as a long publish would hold it (reads do not: SQLite
    # is in WAL mode and PostgreSQL has snapshots, they see the last commit).
    lock: Any
    if storage_engine == "sqlite":
        lock = sqlite3.connect(server.data / "registry.sqlite3", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
    else:
        lock = psycopg.connect(registry.storage.url, autocommit=True)
        lock.execute("BEGIN")
        lock.execute("LOCK TABLE releases IN ACCESS EXCLUSIVE MODE")
    waited: list[tuple[int, float]] = []

    def rollback_request() -> None:
        began = time.monotonic()
        response = httpx.post(f"{server.url}/api/admin/bundles/demo/channels/stable/rollback",
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)
        waited.append((response.status_code, time.monotonic() - began))

    requester = threading.Thread(target=rollback_request)
    try:
        requester.start()
        time.sleep(0.3)  # the request is now waiting on the lock
        asyncio.run(control.probe_for(2.5))
    finally:
        lock.execute("COMMIT")
        lock.close()
    requester.join(30)
    control.close()
    print(f"rollback request {waited}; control worst {max(control.times):.3f}s over {len(control.times)} round trips")
    (status, seconds), = waited
    assert status == 409 and seconds > 2.5  # it did wait for the lock the whole time (one release: nothing before it)...
    assert max(control.times) < 0.5, control.times  # ...and nobody else did
