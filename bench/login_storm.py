"""Login storm: N logins at once through `waystation serve` on 127.0.0.1, and what everyone else feels.

    .venv/bin/python bench/login_storm.py                                  # N = 100
    .venv/bin/python bench/login_storm.py --logins 300 --baseline /tmp/ws-baseline   # another checkout too

Starts the real server (a child process, its own temporary --data and a stand-in site),
registers a user, opens a control sync socket, then fires N logins at once (each a scrypt
hash on the server). While they run it measures, one after another until the last login is
answered: a page load (GET /), a round trip on the control socket (sync step 1 -> step 2),
and a new socket's admission (connect with the token, then its first round trip). It prints
the worst and median of each, the storm's duration and the logins' statuses.

The server gets WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS high (every login comes from
127.0.0.1) and WAYSTATION_PASSWORD_HASH_QUEUE >= N, so that every login is hashed: this
measures the hashing, not the refusals. Bounded: 120 s per run, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import websockets
from pycrdt import Doc, create_sync_message, handle_sync_message

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


def start_server(checkout: Path, data: Path, site: Path, logins: int | None = None) -> tuple[subprocess.Popen[bytes], str, int]:
    """`waystation serve` of `checkout`; with `logins`, limits raised so that many logins are all hashed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(checkout / "py_src")}
    if logins is not None:
        env |= {"WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "1000000", "WAYSTATION_PASSWORD_HASH_QUEUE": str(logins)}
    process = subprocess.Popen([sys.executable, "-m", "waystation", "serve", "--port", str(port), "--site", str(site),
                                "--data", str(data)], cwd=checkout, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return process, url, port
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not come up within 30 s")


async def round_trip(ws: websockets.ClientConnection, doc: Doc) -> None:
    """Sync step 1 out, until step 2 comes back."""
    await ws.send(create_sync_message(doc))
    while True:
        message = await ws.recv()
        assert isinstance(message, bytes)
        if message[0] == 0:
            reply = handle_sync_message(message[1:], doc)
            if reply is not None:
                await ws.send(reply)
            elif message[1] == 1:
                return


async def storm(url: str, port: int, logins: int) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=logins + 10)) as http:
        registered = await http.post(f"{url}/api/sync/register", json={"user": f"storm{os.getpid()}", "password": PASSWORD})
        user, token = registered.json()["user"], registered.json()["token"]
        ws_url = f"ws://127.0.0.1:{port}/api/sync/ws/{user}"
        async with websockets.connect(f"{ws_url}/control?token={token}") as control:
            control_doc = Doc()
            await round_trip(control, control_doc)
            started = time.monotonic()
            answers = asyncio.gather(*(http.post(f"{url}/api/sync/login", json={"user": user, "password": PASSWORD})
                                       for _ in range(logins)))
            page, trip, admission = [], [], []
            await asyncio.sleep(0.1)
            while not answers.done():
                t = time.monotonic()
                await http.get(f"{url}/")
                page.append(time.monotonic() - t)
                t = time.monotonic()
                await round_trip(control, control_doc)
                trip.append(time.monotonic() - t)
                t = time.monotonic()
                async with websockets.connect(f"{ws_url}/fresh?token={token}") as fresh:
                    await round_trip(fresh, Doc())
                admission.append(time.monotonic() - t)
            responses = await answers
            return {"seconds": time.monotonic() - started, "statuses": Counter(r.status_code for r in responses),
                    "page": page, "trip": trip, "admission": admission}


def describe(name: str, values: list[float]) -> str:
    return f"{name} max {max(values) * 1000:.0f} ms, median {statistics.median(values) * 1000:.0f} ms"


def run(checkout: Path, logins: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        (site / "boot.json").write_text("{}")
        (site / "index.html").write_text("<!doctype html>")
        process, url, port = start_server(checkout, Path(tmp) / "data", site, logins)
        try:
            result = asyncio.run(asyncio.wait_for(storm(url, port, logins), 120))
        finally:
            process.terminate()
            process.wait(timeout=15)
    samples = result["page"]
    print(f"{checkout}: {logins} logins in {result['seconds']:.2f} s, statuses {dict(result['statuses'])}; "  # type: ignore[arg-type]
          f"during them ({len(samples)} samples each): {describe('page load', result['page'])}; "  # type: ignore[arg-type]
          f"{describe('socket round trip', result['trip'])}; {describe('new socket', result['admission'])}")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure first, e.g. /tmp/ws-baseline")
    args = parser.parse_args()
    for checkout in ([args.baseline] if args.baseline else []) + [ROOT]:
        run(checkout, args.logins)


if __name__ == "__main__":
    main()
