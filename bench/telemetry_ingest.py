"""Telemetry ingest: how many device reports a `waystation serve` takes per second, and per core.

    .venv/bin/python bench/telemetry_ingest.py [--reports 3000] [--senders 8] [--installations 500]

A real `waystation serve` on 127.0.0.1 (tests/server_process.py) over a fresh data folder with one
published bundle (3 exported functions, 2 models, 1 signal); senders post realistic reports
(a minute of a device's use: 5-60 calls per function, log-normal latencies, a few errors, model
runs, start-up phases on some, the signal's counts) concurrently, each a process of its own with
a keep-alive connection (http.client: light, so that the server, not the senders, is measured),
each report a new id. The reports are built and serialised before the clock starts.

Prints one JSON object: reports/s (wall clock, senders included: they share the machine's cores
with the server), the server process's CPU seconds per 1,000 reports and what that makes per
core, a POST's p50/p99 as the senders saw it, and TelemetryStore.ingest alone in this process
(no HTTP, no checks) for comparison.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit")]

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


def sender(port: int, bodies: list[bytes], ready: Any, go: Any, out: Any) -> None:
    """One device-like sender in a process of its own: a keep-alive connection, a POST after the other."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.connect()
    ready.wait()
    go.wait()
    latencies = []
    for body in bodies:
        start = time.perf_counter()
        connection.request("POST", "/api/telemetry", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        text = answer.read()
        latencies.append(time.perf_counter() - start)
        if answer.status != 202:
            raise RuntimeError(f"the server answered {answer.status}: {text[:200]!r}")
    out.put(latencies)


def send_all(port: int, bodies: list[bytes], senders: int) -> tuple[float, list[float]]:
    """Post every body from `senders` processes at once: (wall seconds, every POST's latency)."""
    ctx = multiprocessing.get_context("fork")
    ready, go, out = ctx.Barrier(senders + 1), ctx.Event(), ctx.Queue()
    processes = [ctx.Process(target=sender, args=(port, bodies[i::senders], ready, go, out)) for i in range(senders)]
    for process in processes:
        process.start()
    ready.wait()  # every sender connected
    start = time.perf_counter()
    go.set()
    latencies = [x for _ in processes for x in out.get(timeout=600)]
    wall = time.perf_counter() - start
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"a sender failed (exit {process.exitcode})")
    return wall, latencies


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
            send_all(server.port, warmup, args.senders)
            cpu_before = server_cpu_seconds(server.pid)
            wall, latencies = send_all(server.port, bodies, args.senders)
            cpu = server_cpu_seconds(server.pid) - cpu_before
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
