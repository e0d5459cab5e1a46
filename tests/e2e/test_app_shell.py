"""The app shell after an app update, in a real browser against the real server: the service worker
refetches only the files that changed, drops their old revisions, and the page boots on the new shell
with the network cut.

The offline boot after one visit is test_digits_page.py::test_offline_reload_still_boots_and_answers.
Here the server serves a copy of the site, which the test updates as a deploy would: two files
rewritten, then sw.js regenerated so that they alone get new revisions (`write_precache`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Request

from waystation.site import write_precache

from .conftest import BOOT_TIMEOUT_MS, open_page, wait_ready

ROOT = Path(__file__).resolve().parents[2]
SHELL_CACHE = "waystation-shell-v1"  # service_worker/sw.js
# The update: a rule the page applies and a statement the page runs, so the test sees the new files in use.
UPDATE = {
    "style.css": "\n:root { --app-update: 2; }\n",
    "digits.js": "\nglobalThis.appUpdate = 2;\n",
}
# update() may resolve before this page's registration object shows the new worker (the browser
# tells the page of it separately, seen late under load): wait for its updatefound, within bounds.
UPDATE_SERVICE_WORKER = """async () => {
  const registration = await navigator.serviceWorker.getRegistration();
  const before = registration.active;
  const found = new Promise((resolve) => registration.addEventListener("updatefound", resolve, { once: true }));
  await registration.update();
  const newest = () => registration.installing ?? registration.waiting ?? registration.active;
  if (newest() === before) await Promise.race([found, new Promise((resolve) => setTimeout(resolve, 15000))]);
  const fresh = newest();
  if (fresh === before) return "no new service worker";
  while (!["activated", "redundant"].includes(fresh.state)) {
    await new Promise((resolve) => fresh.addEventListener("statechange", resolve, { once: true }));
  }
  return fresh.state === "activated" && navigator.serviceWorker.controller === fresh ? "controlling" : fresh.state;
}"""
CACHED_KEYS = "async (name) => (await (await caches.open(name)).keys()).map((request) => request.url)"


@dataclass
class Traffic:
    """The requests the browser sends to the network, the service worker's own told apart: its
    fetch() calls (the precache install) and its scripts (the browser's update check of sw.js)."""

    base: str
    fetched: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    page: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        path = request.url.removeprefix(self.base + "/")
        if request.service_worker is None:
            self.page.append(path)
        else:
            (self.scripts if request.resource_type == "script" else self.fetched).append(path)

    def clear(self) -> None:
        self.fetched.clear()
        self.scripts.clear()
        self.page.clear()


@pytest.fixture
def shell_site(site_dir: Path, tmp_path: Path) -> Path:
    """A copy of the built site, for this test to update."""
    return shutil.copytree(site_dir, tmp_path / "dist")


@pytest.fixture
def shell_server(shell_site: Path, start_server: Callable[..., Any]) -> Any:
    return start_server(shell_site)


@pytest.fixture
def traffic(context: BrowserContext, shell_server: Any) -> Traffic:
    seen = Traffic(shell_server.url)
    context.on("request", seen.record)
    return seen


def precache_entries(site: Path) -> dict[str, str]:
    """url -> revision, as the site's sw.js lists them."""
    code = (site / "sw.js").read_text()
    entries = json.loads(re.search(r"const PRECACHE_ENTRIES = (\[.*?\]);", code, re.S).group(1))
    return {e["url"]: e["revision"] for e in entries}


def update_site(site: Path) -> dict[str, str]:
    for name, addition in UPDATE.items():
        with (site / name).open("a") as f:
            f.write(addition)
    return {e["url"]: e["revision"] for e in write_precache(ROOT, site)}


def cache_keys(base: str, entries: dict[str, str]) -> set[str]:
    return {f"{base}/{url}?__ws_rev={revision}" for url, revision in entries.items()}


def test_an_app_update_refetches_only_the_changed_files(context, shell_site, shell_server, traffic):
    old = precache_entries(shell_site)
    page = open_page(context, shell_server.url + "/digits.html")
    page.wait_for_function("navigator.serviceWorker.controller?.state === 'activated'")
    assert sorted(p for p in traffic.fetched if p in old) == sorted(old)  # the first visit precached the shell once
    assert set(page.evaluate(CACHED_KEYS, SHELL_CACHE)) == cache_keys(shell_server.url, old)

    new = update_site(shell_site)
    assert new.keys() == old.keys()
    changed = {url for url in new if new[url] != old[url]}
    assert changed == set(UPDATE)
    traffic.clear()
    assert page.evaluate(UPDATE_SERVICE_WORKER) == "controlling"

    # The new service worker fetched the changed files and nothing else of the shell (not
    # pyodide.asm.wasm, not the ort wasm); beside them the browser checked sw.js and its imports,
    # and the new worker checked in with the server as each start does (sw/checkin.js).
    assert sorted(p for p in traffic.fetched if not p.startswith("api/bundles/digits/channels/stable/status?")) == sorted(changed)
    # (protocol.js: the message names the service worker shares with the page, at the site's root.)
    scripts = {url for url in old if url.startswith("sw/") and url.endswith(".js")} | {"sw.js", "protocol.js"}
    assert "sw.js" in traffic.scripts and set(traffic.scripts) <= scripts, traffic.scripts
    assert traffic.page == []
    keys = set(page.evaluate(CACHED_KEYS, SHELL_CACHE))
    assert not keys & cache_keys(shell_server.url, {url: old[url] for url in changed})  # old revisions deleted
    assert keys == cache_keys(shell_server.url, new)

    context.set_offline(True)  # the new shell alone: nothing more comes from the server
    page.reload()
    wait_ready(page)
    assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--app-update').trim()") == "2"
    assert page.evaluate("globalThis.appUpdate") == 2
    assert page.evaluate("fetch('/style.css').then((r) => r.text())").endswith(UPDATE["style.css"])
    page.click(".samples button >> nth=0")
    page.wait_for_function("document.querySelector('#latency').textContent.includes('on-device latency')",
                           timeout=BOOT_TIMEOUT_MS)
    assert page.text_content("#answer") == "0"
