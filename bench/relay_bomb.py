"""A gzip bomb against POST /api/events: time, server memory and a control client's round trip.

    .venv/bin/python bench/relay_bomb.py [--limit BYTES] [--bombs 8]

Starts `waystation serve` with WAYSTATION_MAX_RELAY_BYTES=--limit (default: the server's own,
1 MiB), publishes a bundle that relays events, and sends --bombs requests at once, each 64 KiB
of gzip (under max_body_bytes) that inflates to 64 MiB. Run with --limit 1073741824 to see
the server without the bound (it inflates all of it).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "py_src"), str(ROOT / "tests" / "unit")]

from waystation.server.registry import Registry  # noqa: E402

from data_bundle import build_data_bundle  # noqa: E402
from test_sync_server import Server, register  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--bombs", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    bundle = build_data_bundle(tmp, "bomb")
    (tmp / "site").mkdir()
    (tmp / "site" / "boot.json").write_text("{}")
    Registry(tmp / "data").publish(bundle, "stable")
    env = {} if args.limit is None else {"WAYSTATION_MAX_RELAY_BYTES": str(args.limit)}
    server = Server(tmp / "site", tmp / "data", **env).start()
    try:
        _, token = register(server)
        bomb = gzip.compress(b'{"version": "1.0.0", "events": [' + b" " * (64 << 20), compresslevel=9)
        answers: list[tuple[int, float]] = []

        def attack() -> None:
            start = time.perf_counter()
            r = httpx.post(f"{server.url}/api/events/bomb", content=bomb, timeout=120,
                           headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"})
            answers.append((r.status_code, time.perf_counter() - start))

        threads = [threading.Thread(target=attack) for _ in range(args.bombs)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        worst = 0.0
        while any(t.is_alive() for t in threads):
            t0 = time.perf_counter()
            httpx.get(f"{server.url}/api/health", timeout=30)
            worst = max(worst, time.perf_counter() - t0)
        total = time.perf_counter() - start
        assert server.process is not None
        print(f"limit {args.limit or 'default'}: {args.bombs} bombs of {len(bomb):,} bytes -> statuses "
              f"{sorted({s for s, _ in answers})}, all answered in {total:.2f} s (slowest {max(t for _, t in answers):.2f} s), "
              f"server peak RSS {peak_rss_mib(server.process.pid):.0f} MiB, worst health round trip {worst * 1000:.0f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
