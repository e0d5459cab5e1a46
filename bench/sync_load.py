"""Sync load: N y-websocket clients editing at once through `waystation serve` on 127.0.0.1.

    .venv/bin/python bench/sync_load.py                          # N = 10, 100, 1000; rooms of 10
    .venv/bin/python bench/sync_load.py --clients 1000 --room-size 0 --rate 0.01   # one room
    .venv/bin/python bench/sync_load.py --clients 1000 --baseline /tmp/ws-baseline  # another checkout too
    .venv/bin/python bench/sync_load.py --clients 1000,3000 --cluster 3 --generators 3   # many instances

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

With --cluster K, each N is run twice, side by side: against one instance on SQLite (as
above), then against K instances sharing a throw-away PostgreSQL cluster and a Redis, behind
HAProxy (deploy/haproxy.cfg), which the clients connect through; each instance has its own
--data folder. Then "server CPU" is the instances' together, and "infra CPU" PostgreSQL's,
Redis's and HAProxy's. --generators P spreads the clients over P load-generating processes
(client i in process i mod P, so a room's clients are in different processes and, through
HAProxy, on different instances); their latencies use one clock (CLOCK_MONOTONIC, machine-wide).

Bounded: at most --duration + --drain seconds of edits per N, 60 s to connect (more past 2,000
clients), loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
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
# Instances' settings: one user holds every client here, and a user's sockets share one pace:
# raised so that it never binds (its buckets are still counted per message), as for many users;
# its documents (one per room) are not capped at 200; and one instance may hold every client.
LOAD_ENV = {"WAYSTATION_MAX_CONNECTIONS": "10000", "WAYSTATION_SOCKETS_PER_USER": "10000",
            "WAYSTATION_MESSAGES_PER_SECOND": "1000000", "WAYSTATION_BYTES_PER_SECOND": "1e12",
            "WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000", "WAYSTATION_MAX_DOCUMENTS_PER_USER": "100000"}


class Server:
    """`waystation serve` in a child process, with a stand-in site (sync needs none)."""

    def __init__(self, workdir: Path, code: Path = ROOT, name: str = "server", **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        site, data = workdir / "site", workdir / f"data-{name}"
        site.mkdir(exist_ok=True)
        (site / "boot.json").write_text("{}")  # `serve` builds nothing when boot.json exists
        (site / "index.html").write_text("<!doctype html>")
        cmd = [sys.executable, "-m", "waystation", "serve", "--port", str(self.port), "--site", str(site), "--data", str(data)]
        self.log = (workdir / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(code / "py_src"), **LOAD_ENV, **env}  # this checkout's code, or --baseline's
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
        return process_cpu_seconds(self.process.pid)

    def infra_cpu_seconds(self) -> float:
        return 0.0

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


class Cluster:
    """K instances sharing a throw-away PostgreSQL and a Redis, behind HAProxy: the clients'
    one address is HAProxy's. The same parts the scale tests start (tests/, tests/scale/)."""

    def __init__(self, workdir: Path, size: int, code: Path = ROOT) -> None:
        for folder in (ROOT / "tests", ROOT / "tests" / "scale"):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        from haproxy_service import HAProxy
        from postgres_service import PostgresCluster
        from redis_service import RedisServer

        self.instances: list[Server] = []
        self.postgres = PostgresCluster().start()
        self.redis = RedisServer().start()
        self.lb: Any = None
        try:
            url = self.postgres.new_database()
            # as an operator deploys: the schema once, then the instances (none waits on another's migration)
            subprocess.run([sys.executable, "-m", "waystation", "db", "migrate", "--data", str(workdir / "migrate"),
                            "--database", url], cwd=code, env={**os.environ, "PYTHONPATH": str(code / "py_src")},
                           check=True, capture_output=True)
            env = {"WAYSTATION_DATABASE": url, "WAYSTATION_PUBSUB": self.redis.url}
            self.instances = [Server(workdir, code, f"w{i + 1}", **env) for i in range(size)]
            self.lb = HAProxy([f"127.0.0.1:{s.port}" for s in self.instances], workdir / "haproxy").start()
        except BaseException:
            self.stop()
            raise
        self.port, self.url = self.lb.port, self.lb.url

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.instances)

    def infra_cpu_seconds(self) -> float:
        """PostgreSQL's (the postmaster with the backends it reaped, and those alive), Redis's, HAProxy's."""
        postmaster = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        total = process_cpu_seconds(postmaster, reaped_children=True)
        total += sum(process_cpu_seconds(pid) for pid in children_of(postmaster))
        return total + process_cpu_seconds(self.redis.process.pid) + process_cpu_seconds(self.lb.process.pid)

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.stop()
        for instance in self.instances:
            with contextlib.suppress(Exception):
                instance.stop()
        self.redis.close()
        self.postgres.close()


def process_cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """CPU seconds of process `pid` (utime + stime), with its reaped children's if asked; 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def children_of(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


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
    infra_cpu: float = 0.0

    def quantile(self, q: float) -> float:
        return _quantile(sorted(self.latencies), q)

    def cpu_per_delivery(self, with_infra: bool = False) -> float:
        """Server CPU seconds per delivered update (with PostgreSQL's, Redis's and HAProxy's if asked)."""
        cpu = self.server_cpu + (self.infra_cpu if with_infra else 0.0)
        return cpu * self.seconds / max(1, len(self.latencies))

    def row(self, label: str = "") -> str:
        lat = sorted(self.latencies)
        return (f"| {label}{self.clients:,} | {self.rooms:,} | {self.edits / self.seconds:,.0f} | {len(lat) / self.seconds:,.0f} "
                f"| {_ms(lat, 0.5)} | {_ms(lat, 0.99)} | {_ms(lat, 1.0)} | {self.expected - len(lat):,} "
                f"| {self.server_cpu:.0%} | {self.infra_cpu:.0%} | {self.cpu_per_delivery() * 1e6:,.0f} us "
                f"| {self.client_cpu:.0%} | {self.other_cpu:.0%} | {self.connect_seconds:.1f} s |")


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def _ms(ordered: list[float], q: float) -> str:
    """The nearest-rank quantile `q` of `ordered`, in milliseconds."""
    if not ordered:
        return "-"
    return f"{ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000:.1f} ms"


HEADER = ("| clients | rooms | edits/s | deliveries/s | p50 | p99 | max | missing | server CPU | infra CPU "
          "| server CPU per delivery | load CPU | others' CPU | connect |\n" + "|---" * 14 + "|")


def _generator(conn: Any, port: int, token: str, user: str, indices: list[int], size: int,
               args: argparse.Namespace, share: int) -> None:
    """One load-generating process: its clients connect and sync, say "ready", wait for the
    start time (a time.monotonic() value), edit, wait out the drain, and send back what they saw."""
    try:
        asyncio.run(_generate(conn, port, token, user, indices, size, args, share))
    except BaseException as exc:  # the parent reports it: a worker's traceback alone is easy to miss
        conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


async def _generate(conn: Any, port: int, token: str, user: str, indices: list[int], size: int,
                    args: argparse.Namespace, share: int) -> None:
    clients = [LoadClient(i, f"{user}/load-{i // size}") for i in indices]
    gate = asyncio.Semaphore(max(1, args.connect_concurrency // share))
    compression = None if args.no_compression else "deflate"
    limit = CONNECT_SECONDS * max(1.0, len(clients) * share / 2000)  # thousands of handshakes on two cores
    await asyncio.wait_for(asyncio.gather(*(c.connect(port, token, gate, compression) for c in clients)), limit)
    await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), limit)
    conn.send("ready")
    loop = asyncio.get_running_loop()
    start = await loop.run_in_executor(None, conn.recv)  # asyncio's clock is time.monotonic(): one for all processes
    stop = start + args.duration
    rng = random.Random(indices[0] if indices else 0)
    cpu = time.process_time()
    await asyncio.gather(*(c.edit(start, stop, args.rate, rng.random()) for c in clients))
    await asyncio.sleep(max(0.0, stop + args.drain - loop.time()))
    conn.send({"sent": {c.key: c.sent for c in clients}, "latencies": [x for c in clients for x in c.latencies],
               "cpu": time.process_time() - cpu})
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def run_scenario(server: Server | Cluster, token: str, user: str, n: int, args: argparse.Namespace) -> Result:
    size = args.room_size or n
    share = max(1, min(args.generators, n))
    rooms: dict[int, int] = {}
    for i in range(n):
        rooms[i // size] = rooms.get(i // size, 0) + 1
    context = multiprocessing.get_context("fork")
    began = time.monotonic()
    workers = []
    for p in range(share):
        mine, theirs = context.Pipe()
        process = context.Process(target=_generator, args=(theirs, server.port, token, user, list(range(p, n, share)),
                                                            size, args, share), daemon=True)
        process.start()
        workers.append((process, mine))
    try:
        for _, pipe in workers:
            said = pipe.recv() if pipe.poll(2 * CONNECT_SECONDS * max(1.0, n / 2000) + 10) else "no answer"
            if said != "ready":
                raise RuntimeError(f"a load generator did not connect its clients: {said}")
        connect_seconds = time.monotonic() - began
        start = time.monotonic() + 0.5
        cpu = server.cpu_seconds(), server.infra_cpu_seconds(), machine_busy_seconds()
        for _, pipe in workers:
            pipe.send(start)
        reports = []
        for _, pipe in workers:
            if not pipe.poll(args.duration + args.drain + 60):
                raise RuntimeError("a load generator did not report")
            report = pipe.recv()
            if isinstance(report, str):
                raise RuntimeError(report)
            reports.append(report)
        elapsed = time.monotonic() - start
        server_cpu, infra_cpu = server.cpu_seconds() - cpu[0], server.infra_cpu_seconds() - cpu[1]
    finally:
        for process, _ in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    client_cpu = sum(r["cpu"] for r in reports)
    other_cpu = machine_busy_seconds() - cpu[2] - server_cpu - infra_cpu - client_cpu
    sent = {int(key): count for r in reports for key, count in r["sent"].items()}
    return Result(
        clients=n, rooms=len(rooms), edits=sum(sent.values()),
        expected=sum(count * (rooms[i // size] - 1) for i, count in sent.items()),
        latencies=[x for r in reports for x in r["latencies"]], seconds=args.duration, connect_seconds=connect_seconds,
        server_cpu=server_cpu / elapsed, client_cpu=client_cpu / elapsed, other_cpu=max(other_cpu, 0) / elapsed,
        infra_cpu=infra_cpu / elapsed,
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


def register(server: Server | Cluster) -> tuple[str, str]:
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
    parser.add_argument("--generators", type=int, default=1, help="load-generating processes (default 1)")
    parser.add_argument("--cluster", type=int, default=0, metavar="K",
                        help="also run each count against K instances + PostgreSQL + Redis behind HAProxy, "
                             "side by side with one instance on SQLite")
    parser.add_argument("--baseline", type=Path, help="another checkout of the repository: each row is run on it too, "
                        "alternating, and the ratios of p50, p99 and server CPU per delivery are printed")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    if max(counts) > 6000 or args.duration > 120 or args.rate * max(counts) > 6000:
        parser.error("bounded: at most 6,000 clients, 120 s and 6,000 edits/s in all")
    if args.cluster and args.baseline:
        parser.error("--cluster and --baseline compare different things: give one")
    raise_fd_limit(4 * max(counts) + 1024)  # a client's socket here, HAProxy's two, the instance's

    print(f"rate {args.rate}/s per client, {args.duration:.0f} s, room size {args.room_size or 'all'}, "
          f"compression {'off' if args.no_compression else 'deflate'}, {args.generators} load process(es), "
          f"{os.cpu_count()} cores shared by everything")
    print(HEADER)
    for n in counts:
        if args.cluster:
            one = measure(n, args, ROOT)
            print(one.row("1 x SQLite: "), flush=True)
            many = measure(n, args, ROOT, cluster=args.cluster)
            print(many.row(f"{args.cluster} x PostgreSQL+Redis: "), flush=True)
            print(f"|   ratio {args.cluster} instances / 1: p50 {many.quantile(0.5) / one.quantile(0.5):.2f}, "
                  f"p99 {many.quantile(0.99) / one.quantile(0.99):.2f}, server CPU per delivery "
                  f"{many.cpu_per_delivery() / one.cpu_per_delivery():.2f} "
                  f"({many.cpu_per_delivery() * 1e6:.0f} us vs {one.cpu_per_delivery() * 1e6:.0f} us; "
                  f"with PostgreSQL, Redis and HAProxy {many.cpu_per_delivery(with_infra=True) * 1e6:.0f} us) |", flush=True)
            continue
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


def measure(n: int, args: argparse.Namespace, code: Path, cluster: int = 0) -> Result:
    with tempfile.TemporaryDirectory(prefix="sync-load-") as tmp:
        server: Server | Cluster = Cluster(Path(tmp), cluster, code) if cluster else Server(Path(tmp), code)
        try:
            user, token = register(server)
            return run_scenario(server, token, user, n, args)
        except Exception:
            for log in sorted(Path(tmp).glob("*.log")):  # what the servers said, before the folder goes
                print(f"--- {log.name}:\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
        finally:
            server.stop()


if __name__ == "__main__":
    main()
