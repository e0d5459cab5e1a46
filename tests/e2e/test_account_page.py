"""The notes page's account: signing in by any case of the name, and signing out revoking the
token on the real server (a socket or a renewal with it is refused afterwards)."""

from __future__ import annotations

import json

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .test_state_sync import PASSWORD, device, register, wait_sync  # noqa: F401


def close_code(server, user: str, token: str) -> int | None:
    """Open a sync socket with `token`; the close code it ends with (None if it stays open 3 s)."""
    with connect(f"ws://127.0.0.1:{server.port}/api/sync/ws/{user}/notes?token={token}") as ws:
        try:
            while True:
                ws.recv(timeout=3)
        except ConnectionClosed:
            return ws.close_code
        except TimeoutError:
            return None


def test_signing_out_on_the_page_revokes_the_token(device, server):  # noqa: F811  (device: the fixture imported above)
    account = register(server)
    _, page = device(server)
    page.fill("#user", account["user"].upper())  # names are case-insensitive
    page.fill("#password", PASSWORD)
    page.click("#login")
    wait_sync(page, "synced")
    assert page.text_content("#user-name") == account["user"]
    saved = json.loads(page.evaluate("localStorage.getItem('waystation-account')"))
    assert saved["user"] == account["user"] and saved["expiresAt"] > saved["issuedAt"]
    assert close_code(server, account["user"], saved["token"]) is None  # the page's token syncs

    page.click("#sign-out")
    wait_sync(page, "local")
    assert close_code(server, account["user"], saved["token"]) == 4401
    renewal = httpx.post(f"{server.url}/api/sync/renew", headers={"Authorization": f"Bearer {saved['token']}"})
    assert renewal.status_code == 401 and "revoked" in renewal.json()["error"]
