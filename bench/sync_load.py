"""Sync load: N y-websocket clients editing at once through `waystation serve` on 127.0.0.1.

    .venv/bin/python bench/sync_load.py                          # N = 10, 100, 1000; rooms of 10
    .venv/bin/python bench/sync_load.py --clients 1000 --room-size 0 --rate 0.01   # one room
    .venv/bin/python bench/sync_load.py --clients 1000 --baseline /tmp/ws-baseline  # another checkout too

Starts the real server (a child process, its own temporary --data), registers a user and
opens N clients in this process (asyncio + websockets, speaking y-websocket over pycrdt
documents, as tests/unit/test_sync_server.py's clients do), spread over rooms of
--room-size clients (0: all in one room). Once every client has synced, each makes edits
at --rate edits per second for --duration seconds, at a random phase: an edit sets the
client's own key of a shared map to the time it is sent (time.monotonic(), one clock for
every process of the machine). Every other client of the room records, when the update
applies, how long it took to arrive. After --drain seconds for the last edits, it prints
N, rooms, edits/s, deliveries/s, p50/p99/max delivery latency, deliveries missing, and the
CPU the server, the load generator and every other process of the machine used, in cores
(100% is one core): the server and the load generator share the machine's cores, and
other processes can take them too.

Bounded: at most --duration + --drain seconds of edits per N, 60 s to connect, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from pycrdt import Doc, Map, MapEvent, create_sync_message, create_update_message, handle_sync_message

ROOT = Path(__file__).resolve().parents[1]
CONNECT_SECONDS = 60.0


class Server:
    """`waystation serve` in a child process, with a stand-in site (sync needs none)."""

    def __init__(self, workdir: Path, code: Path = ROOT) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        site, data = workdir / "site", workdir / "data"
        site.mkdir()
        (site / "boot.json").write_text("{}")  # `serve` builds nothing when boot.json exists
        (site / "index.html").write_text("<!doctype html>")
        cmd = [sys.executable, "-m", "waystation", "serve", "--port", str(self.port), "--site", str(site), "--data", str(data)]
        self.log = (workdir / "server.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(code / "py_src"),  # this checkout's code, or --baseline's
               # One user holds every client here, and a user's sockets share one pace: raised so
               # that it never binds (its buckets are still counted per message), as for 1,000 users.
               "WAYSTATION_SOCKETS_PER_USER": "5000", "WAYSTATION_MESSAGES_PER_SECOND": "1000000",
               "WAYSTATION_BYTES_PER_SECOND": "1e12"}
        self.process = subprocess.Popen(cmd, cwd=code, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("waystation serve did not come up within 30 s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()


class LoadClient:
    """One y-websocket client: a pycrdt document, its socket, and the latencies it saw."""

    def __init__(self, index: int, room: str) -> None:
        self.key, self.room = str(index), room
        self.doc: Doc[Any] = Doc()
        self.map = self.doc.get("load", type=Map)
        self.map.observe(self._changed)
        self.latencies: list[float] = []
        self.sent = 0
        self.synced = asyncio.Event()
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    def _changed(self, event: MapEvent) -> None:
        now = time.monotonic()
        for key, change in event.keys.items():
            if key != self.key and "newValue" in change:
                self.latencies.append(now - change["newValue"])

    async def connect(self, port: int, token: str, gate: asyncio.Semaphore, compression: str | None) -> None:
        url = f"ws://127.0.0.1:{port}/api/sync/ws/{self.room}?token={token}"
        async with gate:
            self.ws = await websockets.connect(url, max_size=None, ping_interval=None, compression=compression)
        self.reader = asyncio.create_task(self._read())
        await self.ws.send(create_sync_message(self.doc))  # sync step 1, as y-websocket does on open

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message[0] != 0:
                    continue  # awareness: nobody here sends any
                reply = handle_sync_message(message[1:], self.doc)
                if reply is not None:
                    await self.ws.send(reply)
                elif message[1] == 1:
                    self.synced.set()  # the server answered our step 1
        except websockets.ConnectionClosed:
            pass

    async def edit(self, start: float, stop: float, rate: float, phase: float) -> None:
        loop = asyncio.get_running_loop()
        while (at := start + (phase + self.sent) / rate) < stop:
            if (delay := at - loop.time()) > 0:
                await asyncio.sleep(delay)
            state = self.doc.get_state()
            self.map[self.key] = time.monotonic()
            await self.ws.send(create_update_message(self.doc.get_update(state)))
            self.sent += 1

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader


@dataclass
class Result:
    clients: int
    rooms: int
    edits: int
    expected: int
    latencies: list[float]
    seconds: float
    connect_seconds: float
    server_cpu: float
    client_cpu: float
    other_cpu: float

    def quantile(self, q: float) -> float:
        return _quantile(sorted(self.latencies), q)

    def cpu_per_delivery(self) -> float:
        """Server CPU seconds per delivered update."""
        return self.server_cpu * self.seconds / max(1, len(self.latencies))

    def row(self, label: str = "") -> str:
        lat = sorted(self.latencies)
        return (f"| {label}{self.clients:,} | {self.rooms:,} | {self.edits / self.seconds:,.0f} | {len(lat) / self.seconds:,.0f} "
                f"| {_ms(lat, 0.5)} | {_ms(lat, 0.99)} | {_ms(lat, 1.0)} | {self.expected - len(lat):,} "
                f"| {self.server_cpu:.0%} | {self.client_cpu:.0%} | {self.other_cpu:.0%} | {self.connect_seconds:.1f} s |")


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def _ms(ordered: list[float], q: float) -> str:
    """The nearest-rank quantile `q` of `ordered`, in milliseconds."""
    if not ordered:
        return "-"
    return f"{ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000:.1f} ms"


HEADER = ("| clients | rooms | edits/s | deliveries/s | p50 | p99 | max | missing | server CPU | load CPU | others' CPU "
          "| connect |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


async def run_scenario(server: Server, token: str, user: str, n: int, args: argparse.Namespace) -> Result:
    size = args.room_size or n
    clients = [LoadClient(i, f"{user}/load-{i // size}") for i in range(n)]
    room_sizes = {c.room: 0 for c in clients}
    for c in clients:
        room_sizes[c.room] += 1
    began = time.monotonic()
    gate = asyncio.Semaphore(args.connect_concurrency)
    compression = None if args.no_compression else "deflate"
    await asyncio.wait_for(asyncio.gather(*(c.connect(server.port, token, gate, compression) for c in clients)),
                           CONNECT_SECONDS)
    await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), CONNECT_SECONDS)
    connect_seconds = time.monotonic() - began

    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    stop = start + args.duration
    rng = random.Random(n)
    cpu = server.cpu_seconds(), time.process_time(), machine_busy_seconds()
    await asyncio.gather(*(c.edit(start, stop, args.rate, rng.random()) for c in clients))
    expected = sum(c.sent * (room_sizes[c.room] - 1) for c in clients)
    drain_until = loop.time() + args.drain
    while sum(len(c.latencies) for c in clients) < expected and loop.time() < drain_until:
        await asyncio.sleep(0.05)
    elapsed = loop.time() - start
    server_cpu, client_cpu = server.cpu_seconds() - cpu[0], time.process_time() - cpu[1]
    other_cpu = machine_busy_seconds() - cpu[2] - server_cpu - client_cpu
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return Result(
        clients=n, rooms=len(room_sizes), edits=sum(c.sent for c in clients), expected=expected,
        latencies=[x for c in clients for x in c.latencies], seconds=args.duration, connect_seconds=connect_seconds,
        server_cpu=server_cpu / elapsed, client_cpu=client_cpu / elapsed, other_cpu=max(other_cpu, 0) / elapsed,
    )


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot: what else ran shows here."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit(needed: int) -> None:
    """Each client costs a descriptor here and one in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def register(server: Server) -> tuple[str, str]:
    user = f"load{os.getpid()}"
    reply = httpx.post(f"{server.url}/api/sync/register", json={"user": user, "password": "load test password"})
    reply.raise_for_status()
    return user, reply.json()["token"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,100,1000", help="comma-separated client counts (default: 10,100,1000)")
    parser.add_argument("--room-size", type=int, default=10, help="clients per room; 0 puts all in one room (default 10)")
    parser.add_argument("--rate", type=float, default=1.0, help="edits per second of each client (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of edits (default 10)")
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to wait for the last deliveries (default 3)")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="handshakes in flight at once (default 50)")
    parser.add_argument("--no-compression", action="store_true", help="no permessage-deflate (browsers offer it)")
    parser.add_argument("--baseline", type=Path, help="another checkout of the repository: each row is run on it too, "
                        "alternating, and the ratios of p50, p99 and server CPU per delivery are printed")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    if max(counts) > 2000 or args.duration > 120 or args.rate * max(counts) > 5000:
        parser.error("bounded: at most 2,000 clients, 120 s and 5,000 edits/s in all")
    raise_fd_limit(2 * max(counts) + 256)

    print(f"rate {args.rate}/s per client, {args.duration:.0f} s, room size {args.room_size or 'all'}, "
          f"compression {'off' if args.no_compression else 'deflate'}, {os.cpu_count()} cores shared by server and clients")
    print(HEADER)
    for n in counts:
        if args.baseline is None:
            print(measure(n, args, ROOT).row(), flush=True)
            continue
        base = measure(n, args, args.baseline)
        print(base.row("baseline "), flush=True)
        this = measure(n, args, ROOT)
        print(this.row("this "), flush=True)
        print(f"|   ratio this/baseline: p50 {this.quantile(0.5) / base.quantile(0.5):.2f}, "
              f"p99 {this.quantile(0.99) / base.quantile(0.99):.2f}, server CPU per delivery "
              f"{this.cpu_per_delivery() / base.cpu_per_delivery():.2f} "
              f"({this.cpu_per_delivery() * 1e6:.0f} us vs {base.cpu_per_delivery() * 1e6:.0f} us) |", flush=True)


def measure(n: int, args: argparse.Namespace, code: Path) -> Result:
    with tempfile.TemporaryDirectory(prefix="sync-load-") as tmp:
        server = Server(Path(tmp), code)
        try:
            user, token = register(server)
            return asyncio.run(run_scenario(server, token, user, n, args))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
