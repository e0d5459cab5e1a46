"""A first visit under the service worker: the demo page installs its bundle with progress in
bytes, and when the network goes away mid-install it says so, waits, and goes on by itself
when the network is back (no reload), fetching only the chunks it had not stored.

The server's "stable" channel serves digits 1.0.1: the site's digits plus a 1 MiB data file, some
twenty chunks, so that an install can be cut with some of its chunks stored and others not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Route

from waystation.server.registry import Registry

from .conftest import wait_ready
from .test_bundle_updates import make_v2

# Every progress-bar value the page sets, with the status shown at that moment: what the user saw.
RECORD_PROGRESS = """(() => {
  window.progressSeen = [];
  const value = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, "value");
  Object.defineProperty(HTMLProgressElement.prototype, "value", {
    ...value,
    set(v) {
      const status = document.getElementById("status");
      progressSeen.push({ value: v, state: status?.dataset.state, text: status?.textContent });
      value.set.call(this, v);
    },
  });
})();"""
# The chunks the service worker has stored: its IndexedDB database, read from the page.
STORED_CHUNKS = """async () => {
  if (!(await indexedDB.databases()).some((d) => d.name === "waystation-bundles")) return [];
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("waystation-bundles");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  try {
    if (!db.objectStoreNames.contains("chunks")) return [];
    return await new Promise((resolve, reject) => {
      const request = db.transaction("chunks").objectStore("chunks").getAllKeys();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}"""


@dataclass(frozen=True)
class FirstVisit:
    server: Any  # tests/server_process.py's Server
    chunks: dict[str, int]  # digits 1.0.1's chunks: what a first visit installs


@pytest.fixture(scope="module")
def first_visit(tmp_path_factory: pytest.TempPathFactory, start_server) -> Iterator[FirstVisit]:
    v2 = make_v2(tmp_path_factory.mktemp("first-visit"))
    server = start_server()
    Registry(server.data).publish(v2, "stable")  # newer than the site's 1.0.0: what a new device installs
    manifest = json.loads((v2 / "manifest.json").read_text())
    chunks = {sha: size for f in manifest["files"] for sha, size in f["chunks"]}
    assert len(chunks) >= 12, len(chunks)
    yield FirstVisit(server, chunks)
    server.stop()


class Cut:
    """Chunk requests answered until `serve` have been, then held; `now()` cuts the network."""

    def __init__(self, context: BrowserContext, serve: int) -> None:
        self.context, self.serve = context, serve
        self.served: list[str] = []
        self.held: list[Route] = []
        self.cut = False
        context.route("**/chunks/*", self._handle)

    def _handle(self, route: Route) -> None:
        if self.cut:
            route.abort("internetdisconnected")
        elif len(self.served) < self.serve:
            self.served.append(route.request.url.rsplit("/", 1)[1])
            route.fulfill(response=route.fetch())
        else:
            self.held.append(route)

    def now(self, offline: bool) -> None:
        """The network goes away: held requests fail, and so does every later one."""
        self.cut = True
        if offline:
            self.context.set_offline(True)
        for route in self.held:
            route.abort("internetdisconnected")

    def restore(self) -> None:
        self.context.unroute("**/chunks/*")
        self.context.set_offline(False)


def stored_chunks(page: Page, count: int) -> list[str]:
    """The chunks stored once there are `count` of them (the served ones are written one by one)."""
    deadline = time.monotonic() + 20
    while len(stored := page.evaluate(STORED_CHUNKS)) < count:
        assert time.monotonic() < deadline, f"{len(stored)} of {count} chunks stored"
        page.wait_for_timeout(50)
    return stored


def cut_and_resume(context: BrowserContext, first_visit: FirstVisit, chunk_requests: list[str], *, offline: bool) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(RECORD_PROGRESS)
    cut = Cut(context, serve=5)
    page.goto(f"{first_visit.server.url}/digits.html")
    stored = stored_chunks(page, 5)
    assert sorted(stored) == sorted(cut.served)
    cut.now(offline)

    page.wait_for_selector("#status[data-state=waiting]", timeout=20_000)
    shown = page.text_content("#status")
    assert shown.startswith("Waiting for the network: ") and "% of digits is installed" in shown, shown
    assert "downloads by itself when the connection is back" in shown, shown
    page.wait_for_timeout(500)
    assert page.get_attribute("#status", "data-state") == "waiting"  # it waits; it does not fail
    assert sorted(page.evaluate(STORED_CHUNKS)) == sorted(stored)  # nothing more arrived meanwhile

    before = len(chunk_requests)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    cut.restore()
    wait_ready(page)  # the same page, not reloaded: open() resolved
    assert navigations == []
    assert errors == []
    assert page.evaluate("app.version") == "1.0.1"
    answer = page.evaluate("""async () => {
      const sample = (await app.call("samples"))[0];
      return { digit: (await app.call("classify_features", { features: [sample.pixels] }))[0].digit, label: sample.label };
    }""")
    assert answer["digit"] == answer["label"]

    # Only the chunks not stored before the cut were fetched after it, each once.
    after = chunk_requests[before:]
    assert sorted(after) == sorted(set(first_visit.chunks) - set(stored)), (len(after), len(first_visit.chunks), len(stored))

    # What the user saw: the bar in bytes never went back while downloading, and reached the end.
    seen = page.evaluate("progressSeen")
    install = [s for s in seen if s["state"] == "waiting" or s["text"].startswith("fetching digits 1.0.1: ")]
    values = [s["value"] for s in install]
    assert values == sorted(values), values
    assert values[-1] == 1, values
    waiting = [s for s in install if s["state"] == "waiting"]
    assert waiting and 0 < waiting[0]["value"] < 1, waiting
    resumed = [s["text"] for s in install if "resumed" in s["text"]]
    assert resumed and "were stored before the network went away" in resumed[0], resumed
    return page


def test_a_first_visit_cut_off_mid_install_waits_and_resumes_when_the_browser_is_online(context, first_visit, chunk_requests):
    started = time.monotonic()
    cut_and_resume(context, first_visit, chunk_requests, offline=True)
    print(f"\nfirst visit, cut after 5 chunks, resumed on the online event: {time.monotonic() - started:.1f} s")


def test_a_first_visit_resumes_on_its_own_timer_when_no_online_event_comes(context, first_visit, chunk_requests):
    # The requests fail but the browser still thinks it is online: no `online` event will come.
    started = time.monotonic()
    cut_and_resume(context, first_visit, chunk_requests, offline=False)
    print(f"\nfirst visit, cut after 5 chunks, resumed by the retry timer: {time.monotonic() - started:.1f} s")


def test_open_gives_up_after_install_timeout_ms(context, first_visit):
    context.route("**/chunks/*", lambda route: route.abort("internetdisconnected"))
    page = context.new_page()
    page.goto(f"{first_visit.server.url}/boot.json")  # a page of the site, no app started
    out = page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      const events = [];
      const started = performance.now();
      try {
        await open({ bundle: "digits", installTimeoutMs: 5000, onProgress: (p) => events.push(p) });
        return { ok: true };
      } catch (e) {
        return { ok: false, name: e.name, message: e.message, ms: performance.now() - started,
                 waiting: events.filter((p) => p.stage === "waiting-for-network") };
      }
    }""")
    assert not out["ok"], out
    assert out["name"] == "network", out
    assert "gave up installing after" in out["message"] and "open({installTimeoutMs})" in out["message"], out["message"]
    assert len(out["waiting"]) >= 2, out["waiting"]  # it tried again before giving up
    assert all(w["retryInMs"] > 0 and w["reason"].startswith("network: ") for w in out["waiting"]), out["waiting"]
    assert 5000 <= out["ms"] < 60_000, out["ms"]  # the service worker's start is in it: bound generous


def test_progress_of_a_first_install_is_bytes_loaded_of_the_total(context, first_visit):
    page = context.new_page()
    page.goto(f"{first_visit.server.url}/boot.json")
    out = page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      const events = [];
      const app = await open({ bundle: "digits", onProgress: (p) => events.push(p) });
      app.close();
      return events.filter((p) => p.stage === "download");
    }""")
    total = sum(first_visit.chunks.values())
    assert len(out) == len(first_visit.chunks)
    assert {e["total"] for e in out} == {total}
    loaded = [e["loaded"] for e in out]
    assert loaded == sorted(loaded) and loaded[-1] == total
    assert out[-1]["message"] == f"fetching digits 1.0.1: {total / 1024:.1f} KiB of {total / 1024:.1f} KiB"
