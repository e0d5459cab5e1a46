"""The data layer on CPython: the reference figures the browser's are compared with.

    .venv/bin/python bench/data_native.py [--events 100000] [--runs 50]

- the query of the demo (five-minute window + group-by + join with a feature table) over N
  stored events, through waystation.device.data and as the same hand-written SQL on plain
  sqlite3 (the data layer's own overhead is the difference);
- bytes stored per event (file size / N, after VACUUM);
- bytes that travel for a feature update of k changed rows of a 384-dim embedding table,
  against the whole table (gzip, as the server sends it to a client that accepts it).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "py_src"))

from waystation.device.data import Declarations, DeviceData
from waystation.device.hosts.data_native import NativeDataBackend
from waystation.server.features_store import FeatureStore

DIM = 384
ITEMS = 1000


def declarations() -> Declarations:
    return Declarations.parse(
        {"clicks": {"fields": {"item_id": "str", "position": "int?", "query": "str?"}, "retention": {"days": 7}}},
        {"items": {"key": "item_id"}})


def items_rows(seeds: dict[int, int]) -> list[dict]:
    """The table, item i's embedding drawn from seed seeds.get(i, 0): changing a seed changes that row only."""
    out = []
    for i in range(ITEMS):
        r = random.Random(i * 7919 + seeds.get(i, 0) * 104729)
        out.append({"item_id": f"item{i:04d}", "title": f"Recipe {i}", "cat": f"c{i % 12}",
                    "embedding": [round(r.uniform(-0.1, 0.1), 6) for _ in range(DIM)]})
    return out


def timed(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(1)
    tmp = Path(tempfile.mkdtemp())

    server = FeatureStore(tmp / "server")
    seeds: dict[int, int] = {}
    (tmp / "v1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items_rows(seeds)))
    server.publish("items", tmp / "v1.jsonl", "item_id")

    backend = NativeDataBackend(tmp / "device")
    data = DeviceData(backend, "bench", declarations())
    data.features.apply(server.delta_json("items", None))
    now = time.time()
    batch = []
    for i in range(args.events):  # a week of clicks, the last five minutes holding ~0.05% of them
        ts = now - rng.uniform(0, 7 * 86400) if i % 2000 else now - rng.uniform(0, 300)
        batch.append({"item_id": f"item{rng.randrange(ITEMS):04d}", "position": rng.randrange(50), "query": "soup", "ts": ts})
    start = time.perf_counter()
    for i in range(0, len(batch), 1000):
        asyncio.run(data.add_events("clicks", batch[i:i + 1000]))
    add_s = time.perf_counter() - start

    def layer() -> list:
        return (data.event_query("clicks").since(minutes=5).join(data.feature_query("items"), on="item_id")
                .group_by("cat").agg(n=("id", "count"), pos=("position", "mean")).rows())

    db = backend.connect()
    sql = ('SELECT i.cat, COUNT(c.id), AVG(c.position) FROM "ev_bench_clicks" c JOIN "ft_items" i ON c.item_id = i.item_id '
           "WHERE c.ts >= ? GROUP BY i.cat")
    raw = lambda: db.execute(sql, (time.time() - 300,)).fetchall()  # noqa: E731
    mean = lambda: (data.event_query("clicks").since(minutes=5).join(data.feature_query("items"), on="item_id")  # noqa: E731
                    .select("embedding").mean("embedding"))
    layer_ms, raw_ms, mean_ms = timed(layer, args.runs), timed(raw, args.runs), timed(mean, args.runs)

    db.execute("VACUUM")
    pages = "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('ev_bench_clicks', 'ix_bench_clicks')"
    events_table = db.execute(pages).fetchone()[0] if _has_dbstat(db) else None
    print(f"{args.events} events added in batches of 1000: {args.events / add_s:,.0f} events/s")
    print(f"window + join + group-by: waystation {layer_ms:.2f} ms, plain sqlite3 {raw_ms:.2f} ms "
          f"(x{layer_ms / raw_ms:.2f}); {len(layer())} groups")
    print(f"window + join + mean of 384-dim embeddings: {mean_ms:.2f} ms")
    if events_table:
        print(f"bytes stored per event (table + ts index): {events_table / args.events:.1f}")
    print(f"database file: {backend.path.stat().st_size / args.events:.1f} bytes per event (with the {ITEMS}-row feature table)")

    whole = gzip.compress(server.delta_json("items", None) or b"")
    print(f"feature table, {ITEMS} rows x {DIM} floats: whole {len(whole):,} bytes gzipped")
    version = 1
    for k in (1, 10, 100):
        for i in rng.sample(range(ITEMS), k):
            seeds[i] = seeds.get(i, 0) + 1
        (tmp / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items_rows(seeds)))
        server.publish("items", tmp / "v.jsonl", "item_id")
        delta = server.delta_json("items", version) or b""
        version += 1
        rows = len(json.loads(delta)["rows"])
        print(f"  update of k={k}: {rows} rows travel, {len(gzip.compress(delta)):,} bytes gzipped "
              f"({len(gzip.compress(delta)) / len(whole):.2%} of the whole table)")


def _has_dbstat(db) -> bool:  # type: ignore[no-untyped-def]
    try:
        db.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
