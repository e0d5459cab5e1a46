"""CRDT state in the page: the notes live in Yjs documents kept in IndexedDB, and sync between a
user's devices (browser contexts) through the real server whenever the network is there."""

from __future__ import annotations

import json
import secrets
import select
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from .conftest import BOOT_TIMEOUT_MS, open_page

PASSWORD = "correct horse battery"
SYNC_TIMEOUT_MS = 30_000
OAT_MILK = "Buy oat milk, coffee beans and bread"


def register(server) -> dict:
    user = f"user-{secrets.token_hex(4)}"
    response = httpx.post(f"{server.url}/api/sync/register", json={"user": user, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def device(browser: Browser) -> Iterator[Callable[..., tuple[BrowserContext, Page]]]:
    """Open the notes page on a new device (a browser context of its own, with empty storage)."""
    contexts: list[BrowserContext] = []

    def open_device(server, *, init_script: str | None = None) -> tuple[BrowserContext, Page]:
        context = browser.new_context()
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        return context, open_page(context, server.url + "/")

    yield open_device
    for context in contexts:
        context.close()


def sign_in(page: Page, account: dict) -> None:
    page.fill("#user", account["user"])
    page.fill("#password", PASSWORD)
    page.click("#login")
    wait_sync(page, "synced")
    assert page.text_content("#user-name") == account["user"]


def wait_sync(page: Page, state: str) -> None:
    page.wait_for_selector(f"#sync[data-state={state}]", timeout=SYNC_TIMEOUT_MS)


def texts(page: Page) -> list[str]:
    return page.eval_on_selector_all("#notes li", "items => items.map((li) => li.firstChild.firstChild.textContent)")


def wait_texts(page: Page, expected: list[str]) -> None:
    """Wait until the page lists exactly the notes `expected`, in any order."""
    try:
        page.wait_for_function(
            """(want) => JSON.stringify([...document.querySelectorAll('#notes li')]
                  .map((li) => li.firstChild.firstChild.textContent).sort()) === JSON.stringify(want)""",
            arg=sorted(expected), timeout=SYNC_TIMEOUT_MS,
        )
    except PlaywrightTimeoutError:
        assert sorted(texts(page)) == sorted(expected)
        raise


def add_note(page: Page, text: str) -> None:
    before = page.locator("#notes li").count()
    page.fill("#note-text", text)
    page.click("#add")
    page.wait_for_function(f"document.querySelectorAll('#notes li').length === {before + 1}", timeout=BOOT_TIMEOUT_MS)


def remove_note(page: Page, text: str) -> None:
    before = page.locator("#notes li").count()
    page.locator("#notes li", has_text=text).locator(".remove").click()
    page.wait_for_function(f"document.querySelectorAll('#notes li').length === {before - 1}", timeout=BOOT_TIMEOUT_MS)


def add_examples(page: Page) -> list[str]:
    page.click("#examples")
    page.wait_for_function("document.querySelectorAll('#notes li').length === 5", timeout=BOOT_TIMEOUT_MS)
    return texts(page)


def test_notes_stay_on_the_device_across_reloads(device, server):
    _, page = device(server)
    assert page.get_attribute("#sync", "data-state") == "local"
    examples = add_examples(page)
    remove_note(page, OAT_MILK)
    page.reload()
    page.wait_for_selector("#status[data-state=ready]", timeout=BOOT_TIMEOUT_MS)
    wait_texts(page, [t for t in examples if t != OAT_MILK])


def test_two_tabs_of_one_browser_see_each_others_edits_without_an_account(device, server):
    context, first = device(server)
    second = open_page(context, server.url + "/")
    add_note(first, "Seen in the other tab at once")
    wait_texts(second, ["Seen in the other tab at once"])
    remove_note(second, "Seen in the other tab at once")
    wait_texts(first, [])
    assert first.get_attribute("#sync", "data-state") == "local"


def test_two_devices_edit_offline_and_converge_on_reconnect(device, server):
    account = register(server)
    (laptop_context, laptop), (phone_context, phone) = device(server), device(server)
    examples = add_examples(laptop)  # made before signing in: they sync once the laptop signs in
    sign_in(laptop, account)
    sign_in(phone, account)
    wait_texts(phone, examples)

    for context in (laptop_context, phone_context):
        context.set_offline(True)
    for page in (laptop, phone):
        wait_sync(page, "offline")
        assert "Offline" in page.text_content("#sync")
    add_note(laptop, "Call the plumber about the kitchen sink")
    remove_note(laptop, OAT_MILK)
    add_note(phone, "Pick up the dry cleaning on Friday")
    phone.wait_for_timeout(1_000)  # time enough to cross if anything still connected them
    assert "Call the plumber about the kitchen sink" not in texts(phone)
    assert OAT_MILK in texts(phone)

    for context in (laptop_context, phone_context):
        context.set_offline(False)
    expected = [t for t in examples if t != OAT_MILK] + [
        "Call the plumber about the kitchen sink", "Pick up the dry cleaning on Friday"]
    for page in (laptop, phone):
        wait_texts(page, expected)
        wait_sync(page, "synced")
    # Tags were computed where the note was added, and travel with it.
    tags = phone.locator("#notes li", has_text="Call the plumber").locator(".tag").all_text_contents()
    assert tags == laptop.locator("#notes li", has_text="Call the plumber").locator(".tag").all_text_contents()


def test_a_synced_note_from_another_device_is_searchable(device, server):
    account = register(server)
    (_, laptop), (_, phone) = device(server), device(server)
    sign_in(laptop, account)
    sign_in(phone, account)
    add_note(laptop, "Renew the passport before the trip to Japan")
    wait_texts(phone, ["Renew the passport before the trip to Japan"])
    phone.fill("#query", "travel documents")
    phone.click("#search")
    phone.wait_for_selector("#results li", timeout=BOOT_TIMEOUT_MS)
    assert "passport" in phone.text_content("#results li >> nth=0")


def test_edits_survive_a_server_restart(device, start_server):
    server = start_server()
    account = register(server)
    _, laptop = device(server)
    sign_in(laptop, account)
    add_note(laptop, "Before the restart: water the plants")
    server.stop()
    wait_sync(laptop, "syncing")  # the connection dropped; y-websocket keeps trying
    add_note(laptop, "While the server was down: buy stamps")
    server.start()
    wait_sync(laptop, "synced")
    _, desktop = device(server)  # a new device learns everything from the server alone
    sign_in(desktop, account)
    wait_texts(desktop, ["Before the restart: water the plants", "While the server was down: buy stamps"])


def test_each_account_has_its_own_notes_on_a_shared_device(device, server):
    ada, bob = register(server), register(server)
    context, page = device(server)
    add_note(page, "Made before signing in")
    sign_in(page, ada)  # the device's first sign-in: its notes move into the account
    wait_texts(page, ["Made before signing in"])
    add_note(page, "Ada's private note")
    page.click("#sign-out")
    wait_sync(page, "local")
    wait_texts(page, [])  # what moved into Ada's account is not the device's any more
    sign_in(page, bob)
    wait_texts(page, [])  # Bob never sees Ada's notes
    add_note(page, "Bob's note")
    page.click("#sign-out")
    wait_sync(page, "local")
    sign_in(page, ada)
    wait_texts(page, ["Made before signing in", "Ada's private note"])
    # Offline, a reload answers from Ada's copy on this device.
    context.set_offline(True)
    page.reload()
    page.wait_for_selector("#status[data-state=offline]", timeout=BOOT_TIMEOUT_MS)
    wait_texts(page, ["Made before signing in", "Ada's private note"])
    wait_sync(page, "offline")


def test_a_tab_follows_another_tab_signing_in_and_out(device, server):
    account = register(server)
    context, first = device(server)
    second = open_page(context, server.url + "/")
    add_note(first, "Before either tab signed in")
    sign_in(first, account)
    wait_sync(second, "synced")
    wait_texts(second, ["Before either tab signed in"])
    first.click("#sign-out")
    wait_sync(second, "local")
    wait_texts(second, [])


def test_a_refused_token_is_shown_and_not_retried(device, server):
    account = {"user": register(server)["user"], "token": "not-a-token"}
    script = f"localStorage.setItem('waystation-account', {json.dumps(json.dumps(account))})"
    # The worker's sockets are not page events: count the upgrades that reach the server.
    with CountingProxy(server.port) as proxy:
        _, page = device(proxy, init_script=script)
        wait_sync(page, "unauthorized")
        assert "4401" in page.text_content("#sync")
        page.wait_for_timeout(3_000)  # y-websocket would have retried several times by now
        assert page.get_attribute("#sync", "data-state") == "unauthorized"
        assert proxy.sync_sockets == 1  # the document "notes", once
    assert page.is_visible("#account-form")  # the page asks to sign in again
    assert page.evaluate("localStorage.getItem('waystation-account')") is None


class CountingProxy:
    """A TCP relay to the server on 127.0.0.1 that counts the sync WebSocket upgrades through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sync_sockets = 0
        self._lock = threading.Lock()

    def __enter__(self) -> CountingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            first = client.recv(65536)
            if first.startswith(b"GET /api/sync/ws/"):
                with self._lock:
                    self.sync_sockets += 1
            upstream.sendall(first)
            pipes = {client: upstream, upstream: client}
            while first:
                ready, _, _ = select.select(list(pipes), [], [], 30)
                if not ready:
                    return
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    pipes[source].sendall(data)


def test_a_wrong_password_is_told_and_nothing_syncs(device, server):
    account = register(server)
    _, page = device(server)
    page.fill("#user", account["user"])
    page.fill("#password", "not the password")
    page.click("#login")
    page.wait_for_selector("#account-error:not([hidden])")
    assert page.text_content("#account-error") == "wrong user name or password"
    assert page.get_attribute("#sync", "data-state") == "local"
