"""Events and feature tables in headless Chromium: adds from the page, a query over 100,000 events
in the worker (against the same query on CPython), bytes per event, bytes of a feature delta.

    .venv/bin/python bench/events.py [--events 100000] [--items 1000] [--runs 20] [--persistence]

A bundle of its own (`eventbench`: the picks demo with room for 200,000 events and a benchmark
function) is built into a fresh site; a real `waystation serve` serves it. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from waystation.bundles.builder import build_bundle  # noqa: E402
from waystation.server.features_store import FeatureStore  # noqa: E402
from waystation.site import build_site  # noqa: E402

from conftest import Server  # noqa: E402  (the real server the tests use)
from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

BUNDLE = "eventbench"
DIM = 384
WINDOW_S = 300
SPREAD_S = 3600  # events are spread over the last hour: the five-minute window holds ~1/12 of them

BENCH_FUNCTIONS = '''

@export
def bench_query(ctx, runs: int = 20) -> dict:
    """The five-minute window + join + group-by, `runs` times: median and all times in ms."""
    import time

    times, rows = [], []
    for _ in range(runs):
        start = time.perf_counter()
        rows = (ctx.events("clicks").since(minutes=5)
                .join(ctx.features("items", stale_ok=True), on="item_id")
                .group_by("item_id", "title").agg(clicks=("id", "count"), position=("position", "mean"))
                .sort("clicks", descending=True).rows())
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": sorted(times)[len(times) // 2], "first_ms": times[0], "rows": len(rows),
            "clicks": sum(r["clicks"] for r in rows)}


@export
def bench_size(ctx) -> dict:
    """Stored events and the size of the database file(s) holding them."""
    import glob
    import os

    files = glob.glob("/waystation-data/*/data.sqlite3")
    return {"events": ctx.events("clicks").count(), "bytes": sum(os.path.getsize(f) for f in files)}
'''


def bench_site(work: Path) -> Path:
    site = work / "dist"
    build_site(ROOT, site, progress=lambda _m: None)
    source = shutil.copytree(ROOT / "models" / "picks", work / "eventbench", ignore=shutil.ignore_patterns("__pycache__"))
    config = (source / "bundle.toml").read_text().replace('name = "picks"', f'name = "{BUNDLE}"')
    (source / "bundle.toml").write_text(config.replace("rows = 5000", "rows = 200000"))
    with (source / "workflow.py").open("a") as f:
        f.write(BENCH_FUNCTIONS)
    build_bundle(source, site / "bundles", progress=lambda _m: None)
    shutil.copytree(ROOT / "bench" / "web", site / "bench")
    return site


def make_items(n: int, rng: random.Random, changed: frozenset[int] = frozenset(), salt: int = 0) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        r = random.Random(i * 7919 + (salt if i in changed else 0))
        vector = [r.gauss(0, 1) for _ in range(DIM)]
        norm = math.sqrt(sum(v * v for v in vector))
        items.append({"item_id": f"i{i:05d}", "title": f"Item {i}", "embedding": [v / norm for v in vector]})
    return items


def publish(data: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    file = data / "bench-items.jsonl"
    file.write_text("".join(json.dumps(item) + "\n" for item in items))
    try:
        return FeatureStore(data).publish("items", file, "item_id")
    finally:
        file.unlink()


def make_events(n: int, items: int, now: float, rng: random.Random) -> list[dict[str, Any]]:
    return [{"item_id": f"i{rng.randrange(items):05d}", "position": rng.randrange(40), "ts": now - rng.uniform(0, SPREAD_S)}
            for _ in range(n)]


ADD_RATE = """async ([total, batch]) => {
    const longTasks = [];
    const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
    observer.observe({ type: "longtask" });
    const started = performance.now();
    const pending = [];
    const latencies = [];
    for (let i = 0; i < total; i += batch) {
        const events = Array.from({ length: batch },
                                  (_, j) => ({ item_id: "i" + String((i + j) % 1000).padStart(5, "0"), position: j % 40 }));
        const t = performance.now();
        pending.push(app.events.add("clicks", events).then(() => latencies.push(performance.now() - t)));
        await new Promise((resolve) => setTimeout(resolve, 0));   // the next batch in a later task, as a page would
    }
    await Promise.all(pending);
    const ms = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
    observer.disconnect();
    latencies.sort((a, b) => a - b);
    return { events: total, batch, ms, perSecond: total / ms * 1000, longTasks: longTasks.length,
             longestTaskMs: Math.max(0, ...longTasks), addP50Ms: latencies[latencies.length >> 1],
             addP95Ms: latencies[Math.floor(latencies.length * 0.95)] };
}"""

SINGLE_ADDS = """async ([total, burst]) => {
    const longTasks = [];
    const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
    observer.observe({ type: "longtask" });
    const started = performance.now();
    const pending = [];
    for (let i = 0; i < total; i++) {
        pending.push(app.events.add("clicks", { item_id: "i" + String(i % 1000).padStart(5, "0"), position: i % 40 }));
        if ((i + 1) % burst === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await Promise.all(pending);
    const ms = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 100));
    observer.disconnect();
    return { events: total, oneEventPerAdd: true, burst, ms, perSecond: total / ms * 1000, longTasks: longTasks.length,
             longestTaskMs: Math.max(0, ...longTasks) };
}"""


PERSISTENCE = """new Promise((resolve, reject) => {
    const worker = new Worker("/bench/persistence_worker.js", { type: "module" });
    worker.onmessage = (e) => (e.data.ok ? resolve(e.data.value) : reject(new Error(e.data.error)));
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage("go");
})"""


def open_app(page: Page, url: str) -> dict[str, Any]:
    page.goto(url + "/bench/events.html")
    page.wait_for_selector("html[data-ready]", state="attached")
    started = time.perf_counter()
    page.evaluate(f"(async () => {{ globalThis.app = await waystation.open({{ bundle: '{BUNDLE}', serviceWorker: false }}); }})"
                  "()")
    return {"openMs": (time.perf_counter() - started) * 1000, **page.evaluate("({startupMs: app.info.startupMs})")}


def load_events(page: Page, events: list[dict[str, Any]], chunk: int = 10_000) -> float:
    started = time.perf_counter()
    for i in range(0, len(events), chunk):
        page.evaluate("(events) => app.events.add('clicks', events)", events[i:i + chunk])
    return (time.perf_counter() - started) * 1000


async def cpython_query(bundle: Path, data: Path, events: list[dict[str, Any]], delta: bytes, runs: int) -> dict[str, Any]:
    from waystation.device.hosts.data_native import NativeDataBackend
    from waystation.device.runtime import App

    app = await App.open(bundle, data=NativeDataBackend(data))
    try:
        await app.data.apply_features(delta.decode())
        for i in range(0, len(events), 10_000):
            await app.data.add_events("clicks", events[i:i + 10_000])
        return (await app.call("bench_query", {"runs": runs}))["result"]  # type: ignore[no-any-return]
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--persistence", action="store_true", help="also compare IDBFS, OPFS handles and IndexedDB append")
    args = parser.parse_args()
    rng = random.Random(5)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        site = bench_site(work)
        server = Server(site, work / "data").start()
        try:
            items = make_items(args.items, rng)
            publish(server.data, items)
            now = time.time()
            events = make_events(args.events, args.items, now, rng)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context()
                page = context.new_page()
                out["open_empty"] = open_app(page, server.url)
                out["features_full"] = page.evaluate("app.events.status()")["features"]["items"]
                out["add_batches_of_100"] = page.evaluate(ADD_RATE, [20_000, 100])
                out["add_batches_of_1000"] = page.evaluate(ADD_RATE, [20_000, 1000])
                out["add_one_per_call"] = page.evaluate(SINGLE_ADDS, [10_000, 1000])
                page.evaluate("app.close()")
                # A fresh database: only the benchmark's events, then the query and the sizes.
                context.close()
                context = browser.new_context()
                page = context.new_page()
                open_app(page, server.url)
                out["load_100k_ms"] = load_events(page, events)
                out["stored"] = page.evaluate("app.call('bench_size')")
                out["stored"]["bytes_per_event"] = out["stored"]["bytes"] / max(1, out["stored"]["events"])
                out["query_browser"] = page.evaluate(f"app.call('bench_query', {{runs: {args.runs}}})")
                page.reload()
                out["open_with_100k"] = open_app(page, server.url)
                out["query_browser_after_reload"] = page.evaluate("app.call('bench_query', {runs: 1})")
                # A feature update of k changed rows, as it travels to the open page.
                for k in (1, 10, 100):
                    changed = frozenset(rng.sample(range(args.items), k))
                    publish(server.data, make_items(args.items, rng, changed, salt=k))
                    out[f"features_delta_{k}"] = page.evaluate("app.events.syncFeatures()")["features"]["items"]
                context.close()
                if args.persistence:
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(server.url + "/bench/events.html")
                    out["persistence"] = page.evaluate(PERSISTENCE)
                browser.close()
            bundle = next((site / "bundles" / BUNDLE).glob("*/manifest.json")).parent
            delta = FeatureStore(server.data).delta_json("items", None)
            assert delta is not None
            out["query_cpython"] = asyncio.run(cpython_query(bundle, work / "native", events, delta, args.runs))
            out["query_ratio_browser_to_cpython"] = out["query_browser"]["median_ms"] / out["query_cpython"]["median_ms"]
        finally:
            server.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
