"""Fan-out between server instances: Redis pub/sub against PostgreSQL LISTEN/NOTIFY, for what the
sync rooms send each other (`waystation.server.sync.fanout`): update-sized payloads, one channel
per room, every instance subscribed to the rooms it holds.

A throw-away redis-server and PostgreSQL cluster on 127.0.0.1 (tests/redis_service.py,
tests/postgres_service.py). For each payload size:
- latency: one message at a time, publish -> the subscriber has the payload in hand (p50, p99);
- throughput: `--burst` messages sent back to back (Redis: pipelined, 256 a round trip, as the
  fanout sends; PostgreSQL: psycopg's pipeline mode, one autocommit NOTIFY each), at most
  WINDOW ahead of the slowest subscriber, until the last one is received.
PostgreSQL rows: "inline" sends the update in the NOTIFY (base64 text: NOTIFY takes text, and at
most 7999 bytes of it, so inline stops at ~5.9 KB of update); "id+read" notifies the row's id and
the receiver reads the row (what any update past the limit needs; the rows exist beforehand, as
the store wrote them).

    .venv/bin/python bench/pubsub_fanout.py [--messages 1000] [--burst 5000] [--subscribers 1]

2026-12-03, this 2-core machine, load average 1.2-1.9, redis-server 7.0.15 and PostgreSQL 15
(fsync off, as the tests run it), redis-py 8.1.0 without hiredis, psycopg 3.3.9; everything,
publisher and subscribers, in one Python process (throughput is the client's, not the servers'):

| transport (1 subscriber) | 100 B p50 / p99 ms | 2 KiB p50 / p99 ms | 20 KiB p50 / p99 ms | msgs/s 100 B / 2 KiB / 20 KiB |
|---|---|---|---|---|
| Redis PUBLISH             | 0.183 / 0.572 | 0.186 / 0.434 | 0.331 / 2.873 | 23,403 / 11,416 / 2,624 |
| PostgreSQL NOTIFY inline  | 0.220 / 0.561 | 0.235 / 2.755 | over the limit | 17,768 / 6,099 / - |
| PostgreSQL NOTIFY id+read | 0.402 / 0.733 | 0.412 / 4.171 | 0.546 / 1.079 | 5,174 / 4,854 / 2,765 |

With 3 subscribers, p50: Redis 0.285 / 0.303 / 0.824 ms, NOTIFY inline 0.347 / 0.397 ms, id+read
1.103 / 1.012 / 1.245 ms. Redis is ahead at every size; the rates are all far above what typing
sends. A 20 KiB burst of 5000 sent without a window got the subscriber disconnected by Redis
(client-output-buffer-limit pubsub, 32 MB): what the fanout then does is reconnect and resync.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from postgres_service import PostgresCluster  # noqa: E402
from redis_service import RedisServer  # noqa: E402

SIZES = (100, 2048, 20480)
NOTIFY_LIMIT = 7999  # bytes of payload PostgreSQL's NOTIFY takes
CHANNEL = "room_bench"
WINDOW = 1024  # messages a publisher may be ahead of its slowest subscriber



def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def payload(size: int, n: int) -> bytes:
    return n.to_bytes(8, "big") + os.urandom(size - 8)


# --- Redis ---


async def redis_subscriber(url: str, queue: asyncio.Queue[bytes]) -> asyncio.Task[None]:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
        pass

    async def read() -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "message":
                    queue.put_nowait(message["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    return asyncio.create_task(read())


async def bench_redis(url: str, size: int, messages: int, burst: int, subscribers: int) -> dict[str, float]:
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in range(subscribers)]
    readers = [await redis_subscriber(url, queue) for queue in queues]
    publisher = aioredis.Redis.from_url(url)
    latencies = []
    for n in range(messages):
        data = payload(size, n)
        start = time.perf_counter()
        await publisher.publish(CHANNEL, data)
        for queue in queues:
            got = await queue.get()
            assert got == data
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    received = [0] * subscribers
    counting = [asyncio.create_task(count(queue.get, received, i, burst)) for i, queue in enumerate(queues)]
    for first in range(0, burst, 256):
        await window(received, first)
        async with publisher.pipeline(transaction=False) as pipe:
            for n in range(first, min(burst, first + 256)):
                pipe.publish(CHANNEL, payload(size, n))
            await pipe.execute()
    await asyncio.gather(*counting)
    elapsed = time.perf_counter() - start
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await publisher.aclose()
    return summary(latencies, burst, elapsed, size)


# --- PostgreSQL ---


async def pg_listener(url: str, queue: asyncio.Queue[str]) -> tuple[asyncio.Task[None], psycopg.AsyncConnection]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(f"LISTEN {CHANNEL}")

    async def read() -> None:
        async for notify in conn.notifies():
            queue.put_nowait(notify.payload)

    return asyncio.create_task(read()), conn


async def bench_postgres(url: str, size: int, messages: int, burst: int, subscribers: int,
                         by_id: bool) -> dict[str, float] | None:
    if not by_id and len(base64.b64encode(payload(size, 0))) > NOTIFY_LIMIT:
        return None  # inline cannot carry it
    queues: list[asyncio.Queue[str]] = [asyncio.Queue() for _ in range(subscribers)]
    listeners = [await pg_listener(url, queue) for queue in queues]
    readers = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(subscribers)]
    publisher = await psycopg.AsyncConnection.connect(url, autocommit=True)
    if by_id:  # the store wrote them already: only the notify and the read are the fanout's
        await publisher.execute("DROP TABLE IF EXISTS bench_updates")
        await publisher.execute("CREATE TABLE bench_updates (id BIGINT PRIMARY KEY, room TEXT, data BYTEA)")
        async with publisher.cursor() as cursor:
            await cursor.executemany("INSERT INTO bench_updates VALUES (%s, 'u/doc', %s)",
                                     [(n, payload(size, n)) for n in range(max(messages, burst))])

    def message(n: int) -> str:
        return str(n) if by_id else base64.b64encode(payload(size, n)).decode()

    async def receive(queue: asyncio.Queue[str], reader: psycopg.AsyncConnection) -> bytes:
        text = await queue.get()
        if not by_id:
            return base64.b64decode(text)
        cursor = await reader.execute("SELECT data FROM bench_updates WHERE id = %s", (int(text),))
        row = await cursor.fetchone()
        assert row is not None
        return bytes(row[0])

    latencies = []
    for n in range(messages):
        start = time.perf_counter()
        await publisher.execute("SELECT pg_notify(%s, %s)", (CHANNEL, message(n)))
        for queue, reader in zip(queues, readers):
            got = await receive(queue, reader)
            assert got[:8] == n.to_bytes(8, "big") and len(got) == size
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    received = [0] * subscribers
    counting = [asyncio.create_task(count(lambda q=queue, r=reader: receive(q, r), received, i, burst))  # type: ignore[misc]
                for i, (queue, reader) in enumerate(zip(queues, readers))]
    for first in range(0, burst, 256):
        await window(received, first)
        async with publisher.pipeline():
            for n in range(first, min(burst, first + 256)):
                await publisher.execute("SELECT pg_notify(%s, %s)", (CHANNEL, message(n)))
    await asyncio.gather(*counting)
    elapsed = time.perf_counter() - start
    for task, conn in listeners:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()
    for conn in [*readers, publisher]:
        await conn.close()
    return summary(latencies, burst, elapsed, size)


async def count(receive: Callable[[], Awaitable[object]], received: list[int], index: int, total: int) -> None:
    for _ in range(total):
        await receive()
        received[index] += 1


async def window(received: list[int], sent: int) -> None:
    """Wait until every subscriber is within WINDOW messages of `sent`: a sustained rate, not a
    queue piling up (Redis drops a pub/sub client with 32 MB waiting for it: its default
    client-output-buffer-limit, which a 20 KiB burst of 5000 reached)."""
    while min(received) < sent - WINDOW:
        await asyncio.sleep(0.0005)


def summary(latencies: list[float], burst: int, elapsed: float, size: int) -> dict[str, float]:
    return {"p50_ms": statistics.median(latencies) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "msgs_per_s": burst / elapsed, "mb_per_s": burst * size / elapsed / 1e6}


async def main(args: argparse.Namespace) -> None:
    with RedisServer() as redis, PostgresCluster() as cluster:
        database = cluster.new_database()
        print(f"{args.messages} one-at-a-time messages, bursts of {args.burst}, {args.subscribers} subscriber(s)\n")
        print("| transport | payload | p50 ms | p99 ms | msgs/s | MB/s |")
        print("|---|---|---|---|---|---|")
        for size in SIZES:
            rows: list[tuple[str, dict[str, float] | None]] = [
                ("Redis PUBLISH", await bench_redis(redis.url, size, args.messages, args.burst, args.subscribers)),
                ("PostgreSQL NOTIFY inline", await bench_postgres(database, size, args.messages, args.burst,
                                                                  args.subscribers, by_id=False)),
                ("PostgreSQL NOTIFY id+read", await bench_postgres(database, size, args.messages, args.burst,
                                                                   args.subscribers, by_id=True)),
            ]
            for name, figures in rows:
                if figures is None:
                    print(f"| {name} | {size} B | over NOTIFY's {NOTIFY_LIMIT}-byte limit | | | |")
                else:
                    print(f"| {name} | {size} B | {figures['p50_ms']:.3f} | {figures['p99_ms']:.3f} "
                          f"| {figures['msgs_per_s']:,.0f} | {figures['mb_per_s']:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="one-at-a-time messages per row (latency)")
    parser.add_argument("--burst", type=int, default=5000, help="messages sent back to back per row (throughput)")
    parser.add_argument("--subscribers", type=int, default=1, help="instances listening (each gets every message)")
    asyncio.run(main(parser.parse_args()))
