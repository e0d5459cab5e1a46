"""Account attacks against `waystation serve` on 127.0.0.1, with the server's default settings.

    .venv/bin/python bench/account_attacks.py --baseline /tmp/ws-baseline   # the old code first

For each checkout: a fresh server (temporary --data, stand-in site); then, from 127.0.0.1:
names differing only by case, the commonest password, odd JSON bodies, 30 wrong guesses as
fast as they go then the right password, sign-out and an open socket with the token, and
40 sockets of one user. It prints what the server answered to each.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import websockets
from pycrdt import Doc, create_sync_message

from login_storm import ROOT, start_server

PASSWORD = "correct horse battery"
ODD = {"deep nesting": b'{"user": ' + b"[" * 5000 + b"]" * 5000 + b', "password": "x"}',
       "5,000-digit number": b'{"user": "u", "password": ' + b"9" * 5000 + b"}",
       "lone surrogate": b'{"user": "u", "password": "abc\\ud800defgh"}'}


async def close_code(ws: websockets.ClientConnection, timeout: float) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        return ws.close_code
    except TimeoutError:
        return None


async def attacks(url: str, port: int) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        names = [(await http.post(f"{url}/api/sync/register", json={"user": n, "password": PASSWORD})).status_code
                 for n in ("Ada", "ada", "ADA")]
        print(f"  register Ada, ada, ADA: {names}")
        weak = await http.post(f"{url}/api/sync/register", json={"user": "weak", "password": "password"})
        print(f"  register with 'password': {weak.status_code}")
        for name, body in ODD.items():
            try:
                odd = await http.post(f"{url}/api/sync/login", content=body)
                print(f"  login with {name}: {odd.status_code} {odd.text[:80]!r}")
            except httpx.TransportError as exc:
                print(f"  login with {name}: no answer, the connection dropped ({type(exc).__name__})")
        login = (await http.post(f"{url}/api/sync/register", json={"user": "leaver", "password": PASSWORD})).json()
        print(f"  token lifetime: {_lifetime(login)}")
        ws_url = f"ws://127.0.0.1:{port}/api/sync/ws/leaver"
        sockets = [await websockets.connect(f"{ws_url}/doc{i}?token={login['token']}") for i in range(40)]
        codes = await asyncio.gather(*(close_code(ws, 1) for ws in sockets))
        print(f"  40 sockets of one user: {dict(Counter('open' if c is None else c for c in codes))}")
        await asyncio.gather(*(ws.close() for ws in sockets))
        async with websockets.connect(f"{ws_url}/doc?token={login['token']}") as ws:
            await ws.send(create_sync_message(Doc()))
            out = await http.post(f"{url}/api/sync/logout", headers={"Authorization": f"Bearer {login['token']}"})
            print(f"  logout: {out.status_code}; the open socket then: close code {await close_code(ws, 3)} "
                  "(None: still open after 3 s)")
        user = "victim"
        await http.post(f"{url}/api/sync/register", json={"user": user, "password": PASSWORD})
        started, statuses = time.monotonic(), []
        for _ in range(30):
            statuses.append((await http.post(f"{url}/api/sync/login", json={"user": user, "password": "wrong!!!"})).status_code)
        right = await http.post(f"{url}/api/sync/login", json={"user": user, "password": PASSWORD})
        print(f"  30 wrong guesses in {time.monotonic() - started:.1f} s: {dict(Counter(statuses))}; then the right "
              f"password: {right.status_code} (Retry-After {right.headers.get('retry-after')})")


def _lifetime(answer: dict[str, object]) -> str:
    if "expires_at" not in answer:
        return "30 days (not told; no renewal, no revocation)"
    return f"{(float(answer['expires_at']) - float(answer['issued_at'])) / 3600:.0f} h"  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to attack first, e.g. /tmp/ws-baseline")
    args = parser.parse_args()
    for checkout in ([args.baseline] if args.baseline else []) + [ROOT]:
        with tempfile.TemporaryDirectory() as tmp:
            site = Path(tmp) / "site"
            site.mkdir()
            (site / "boot.json").write_text("{}")
            (site / "index.html").write_text("<!doctype html>")
            process, url, port = start_server(checkout, Path(tmp) / "data", site)
            print(checkout)
            try:
                asyncio.run(asyncio.wait_for(attacks(url, port), 120))
            finally:
                process.terminate()
                process.wait(timeout=15)


if __name__ == "__main__":
    main()
