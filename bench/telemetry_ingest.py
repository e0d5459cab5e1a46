"""Telemetry ingest: how many device reports a `waystation serve` takes per second, and per core.

    .venv/bin/python bench/telemetry_ingest.py [--reports 3000] [--senders 8] [--installations 500]

A real `waystation serve` on 127.0.0.1 (tests/server_process.py) over a fresh data folder with one
published bundle (3 exported functions, 2 models, 1 signal); senders post realistic reports
(a minute of a device's use: 5-60 calls per function, log-normal latencies, a few errors, model
runs, start-up phases on some, the signal's counts) concurrently over keep-alive connections,
each report a new id. The reports are built and serialised before the clock starts.

Prints one JSON object: reports/s (wall clock, senders included: they share the machine's cores
with the server), the server process's CPU seconds per 1,000 reports and what that makes per
core, a POST's p50/p99 as the senders saw it, and TelemetryStore.ingest alone in this process
(no HTTP, no checks) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit")]

import httpx  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from waystation.server.registry import Registry  # noqa: E402
from waystation.server.telemetry_store import TelemetryStore  # noqa: E402

from server_process import Server  # noqa: E402
from telemetry_reports import installation, report, telemetry_bundle  # noqa: E402

BUNDLE = "ingestbench"
VERSION = "1.0.0"
FUNCTIONS = ("classify_features", "embed_text", "rank_items")
MODELS = ("classifier", "encoder")


def realistic(rng: random.Random, device: str) -> dict[str, Any]:
    functions = {}
    for i, name in enumerate(FUNCTIONS):
        calls = rng.randint(5, 60)
        samples = [rng.lognormvariate(1.5 + i, 0.5) for _ in range(calls)]
        failed = rng.choice((0, 0, 0, 1))
        functions[name] = (samples, {"model-error": failed} if failed else {})
    runs = sum(len(s) for s, _ in functions.values())
    models = {m: [rng.lognormvariate(1 + j, 0.4) for _ in range(runs // 2)] for j, m in enumerate(MODELS)}
    startup = {"open": [rng.uniform(200, 900)], "python": [rng.uniform(800, 2500)], "models": [rng.uniform(50, 400)]}
    counts = [rng.randint(0, 10) for _ in range(6)]
    return report(BUNDLE, VERSION, device=device, functions=functions, models=models,
                  startup=startup if rng.random() < 0.2 else None, signals={"top_score": counts})


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def send_all(url: str, bodies: list[bytes], senders: int) -> list[float]:
    queue = list(reversed(bodies))
    latencies: list[float] = []
    headers = {"Content-Type": "application/json"}

    async def sender(client: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            start = time.perf_counter()
            answer = await client.post(f"{url}/api/telemetry", content=body, headers=headers)
            latencies.append(time.perf_counter() - start)
            if answer.status_code != 202:
                raise RuntimeError(f"the server answered {answer.status_code}: {answer.text}")

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--installations", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(1)
    devices = [installation() for _ in range(args.installations)]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site, data = root / "site", root / "data"
        site.mkdir()
        (site / "boot.json").write_text("{}")
        (site / "index.html").write_text("<!doctype html>")
        registry = Registry(data)
        registry.add_version(telemetry_bundle(root / "build", Ed25519PrivateKey.generate(), BUNDLE, VERSION,
                                              models=MODELS))
        registry.release(BUNDLE, VERSION, "stable")

        warmup = [json.dumps(realistic(rng, rng.choice(devices))).encode() for _ in range(200)]
        bodies = [json.dumps(realistic(rng, rng.choice(devices))).encode() for _ in range(args.reports)]
        server = Server(site, data, WAYSTATION_TELEMETRY_REPORTS_PER_MINUTE="0").start()
        try:
            asyncio.run(send_all(server.url, warmup, args.senders))
            cpu_before, start = server_cpu_seconds(server.pid), time.perf_counter()
            latencies = asyncio.run(send_all(server.url, bodies, args.senders))
            wall, cpu = time.perf_counter() - start, server_cpu_seconds(server.pid) - cpu_before
        finally:
            server.stop()
        stored = TelemetryStore(data).version_stats(BUNDLE, VERSION)

        alone = TelemetryStore(root / "alone")
        reports = [json.loads(b) for b in bodies]
        t0 = time.perf_counter()
        for r in reports:
            alone.ingest(r)
        alone_s = time.perf_counter() - t0

    cpu_per_1000 = cpu / args.reports * 1000
    print(json.dumps({
        "reports": args.reports, "senders": args.senders, "installations": args.installations,
        "mean_report_bytes": round(sum(map(len, bodies)) / len(bodies)),
        "reports_per_second": round(args.reports / wall, 1),
        "server_cpu_seconds_per_1000_reports": round(cpu_per_1000, 3),
        "reports_per_second_per_core": round(1000 / cpu_per_1000, 1),
        "post_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "post_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "store_ingest_alone_per_second": round(len(reports) / alone_s, 1),
        "devices_counted": stored.devices, "calls_counted": stored.calls,
        "cores": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
