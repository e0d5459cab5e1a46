"""Offload in a real browser: a first visit with `open({fallback: "auto"})` answers from the server
while the device installs and boots, then from the device; a function declared "never" is never
sent to the server, during the install included (every request of the session is recorded).

The server runs on a fresh --data registry with digits 1.0.1 on channel "hybrid": the site's
digits with every function `offload="allowed"` except `classify`, left at the default "never".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from waystation.bundles.signing import dev_key
from waystation.server.registry import Registry

from .conftest import BOOT_TIMEOUT_MS

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
PROBE_PAGE = "/offload-probe.html"  # a blank page of the site's origin: the test opens the bundle itself

FIRST_VISIT = """async ({ account, fallback }) => {
  const { open } = await import("/waystation.js");
  const offloads = [];
  const started = performance.now();
  const app = await open({ bundle: "digits", channel: "hybrid", sync: account, fallback });
  window.app = app;
  app.addEventListener("offload", (e) => offloads.push(e.detail));
  const openedMs = performance.now() - started;
  const versionAtOpen = app.version;
  const calls = [];
  const call = async (name, args) => {
    const result = await app.call(name, args);
    calls.push({ name, ranOn: app.lastCall.ranOn, atMs: performance.now() - started });
    return result;
  };
  // The "never" function, asked at once: it waits for the device, whatever the device is doing.
  const bar = Array.from({ length: 16 * 16 }, (_, i) => (i % 16 > 5 && i % 16 < 10 ? 1 : 0));  // a "1"
  const drawing = { pixels: bar, width: 16, height: 16 };
  const privately = call("classify", drawing);
  const samples = await call("samples", {});
  const [first] = await call("classify_features", { features: [samples[0].pixels] });
  const firstAnswerMs = performance.now() - started;
  const kept = await privately;
  await app.ready;
  const [later] = await call("classify_features", { features: [samples[0].pixels] });
  return { openedMs, firstAnswerMs, calls, offloads, first: first.digit, later: later.digit, label: samples[0].label,
           kept: kept.digit, version: app.version, versionAtOpen };
}"""


CONFIDENCE = b'''
from waystation.device import export

@export(offload="on-low-confidence", threshold=0.5)
def guess(ctx, x: float) -> dict:
    return {"value": x, "confidence": x}
'''

# Needs numpy, which the device (Pyodide here) lacks and the server (CPython) has.
NEEDY = b'''
import numpy

from waystation.device import export

@export(offload="allowed")
def total(ctx, values: list[float]) -> float:
    return float(numpy.sum(values))
'''

UNSURE = """async ({ account }) => {
  const { open } = await import("/waystation.js");
  const app = await open({ bundle: "unsure", channel: "hybrid", sync: account, fallback: "auto" });
  await app.ready;
  const offloads = [];
  app.addEventListener("offload", (e) => offloads.push(e.detail));
  const ran = [];
  for (const x of [0.9, 0.2, 0.5]) {
    const answer = await app.call("guess", { x });
    ran.push({ x, value: answer.value, ranOn: app.lastCall.ranOn });
  }
  return { ran, offloads, policy: app.info.offload.guess };
}"""


@pytest.fixture(scope="module")
def hybrid_server(site_dir: Path, tmp_path_factory: pytest.TempPathFactory, start_server) -> Iterator:
    """A fresh server whose channel "hybrid" serves digits 1.0.1, offloadable but for classify."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from bundle_factory import make_bundle
    from offload_bundles import offloadable

    tmp = tmp_path_factory.mktemp("offload")
    renamed = offloadable(site_dir / "bundles" / "digits" / "1.0.0", tmp / "offload", never=["classify"], version="1.0.1")
    unsure = make_bundle(tmp / "made", dev_key(), "unsure", "1.0.0", body=CONFIDENCE)
    needy = make_bundle(tmp / "made", dev_key(), "needy", "1.0.0", body=NEEDY)
    server = start_server()
    for bundle in (renamed, unsure, needy):
        Registry(server.data).publish(bundle, "hybrid")
    yield server
    server.stop()


def account(server) -> dict[str, str]:
    import secrets

    user = f"offload-{secrets.token_hex(4)}"
    answer = httpx.post(f"{server.url}/api/sync/register", json={"user": user, "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    return {"user": answer.json()["user"], "token": answer.json()["token"]}


def first_visit(context: BrowserContext, server) -> tuple[Page, list[str]]:
    """A blank page of the server's origin in a fresh context, and every URL the session requests."""
    requests: list[str] = []
    context.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    context.route(server.url + PROBE_PAGE, lambda route: route.fulfill(
        content_type="text/html", body="<!doctype html><title>offload probe</title>"))
    page = context.new_page()
    page.goto(server.url + PROBE_PAGE)
    return page, requests


def test_a_first_visit_answers_from_the_server_then_from_the_device(context: BrowserContext, hybrid_server) -> None:
    page, requests = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    seen = page.evaluate(FIRST_VISIT, {"account": account(hybrid_server), "fallback": "auto"})
    order = [(c["name"], c["ranOn"]) for c in seen["calls"]]
    # Asked while the device installed and booted, the allowed calls were answered by the server;
    # the "never" one, asked first, waited for the device; later calls ran on the device.
    assert order == [("samples", "server"), ("classify_features", "server"), ("classify", "device"),
                     ("classify_features", "device")], seen["calls"]
    assert seen["first"] == seen["later"] == seen["label"]  # the same answer wherever it ran
    assert [o["reason"] for o in seen["offloads"]] == ["device-loading", "device-loading"]
    assert seen["versionAtOpen"] == seen["version"] == "1.0.1"  # the server's description, then the device's
    runs = [r for r in requests if "/api/run/" in r]
    assert any(r.endswith("/api/run/digits/1.0.1/classify_features") for r in runs), runs
    assert not any("/classify" in r and not r.endswith("classify_features") for r in runs), runs  # never sent
    print(f"fallback auto: open() {seen['openedMs']:.0f} ms, first answer {seen['firstAnswerMs']:.0f} ms")


def test_without_fallback_nothing_is_sent(context: BrowserContext, hybrid_server) -> None:
    page, requests = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    seen = page.evaluate(FIRST_VISIT, {"account": account(hybrid_server), "fallback": "never"})
    assert {c["ranOn"] for c in seen["calls"]} == {"device"}
    assert seen["offloads"] == [] and seen["first"] == seen["label"]
    assert not [r for r in requests if "/api/run/" in r]
    print(f"fallback never: open() {seen['openedMs']:.0f} ms, first answer {seen['firstAnswerMs']:.0f} ms")


def test_a_low_confidence_answer_is_asked_again_of_the_server(context: BrowserContext, hybrid_server) -> None:
    page, requests = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    seen = page.evaluate(UNSURE, {"account": account(hybrid_server)})
    assert seen["policy"] == {"offload": "on-low-confidence", "writes_state": False, "threshold": 0.5,
                              "confidence": "confidence"}
    # Sure enough (0.9, and 0.5: not below the threshold): the device's answer; unsure (0.2): the server's.
    assert [(r["x"], r["ranOn"]) for r in seen["ran"]] == [(0.9, "device"), (0.2, "server"), (0.5, "device")]
    assert [o["reason"] for o in seen["offloads"]] == ["low-confidence"]
    assert len([r for r in requests if r.startswith("POST") and "/api/run/unsure/1.0.0/guess" in r]) == 1



OPEN_AND_CALL = """async ({ account, bundle, installTimeoutMs }) => {
  const { open, WaystationError } = await import("/waystation.js");
  let app;
  try {
    app = await open({ bundle, channel: "hybrid", sync: account, fallback: "auto", installTimeoutMs });
  } catch (e) {
    return { opened: false, name: e.name, message: e.message, details: e.details, waystationError: e instanceof WaystationError };
  }
  const offloads = [];
  app.addEventListener("offload", (e) => offloads.push(e.detail));
  const samples = await app.call("samples", {});
  const [answer] = await app.call("classify_features", { features: [samples[0].pixels] });
  const ranOn = app.lastCall.ranOn;
  app.close();
  return { opened: true, ranOn, digit: answer.digit, label: samples[0].label, offloads };
}"""


def test_offline_an_allowed_function_answers_on_the_device(context: BrowserContext, hybrid_server) -> None:
    page, requests = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    user = account(hybrid_server)
    page.evaluate("""async (account) => {
      const { open } = await import("/waystation.js");
      const app = await open({ bundle: "digits", channel: "hybrid", sync: account, fallback: "auto" });
      await app.ready;  // installed on the device
      app.close();
    }""", user)
    context.set_offline(True)
    sent = len(requests)
    seen = page.evaluate(OPEN_AND_CALL, {"account": user, "bundle": "digits", "installTimeoutMs": None})
    assert seen["opened"], seen
    # classify_features may run on the server, but the device answers it: nothing was sent.
    assert seen["ranOn"] == "device" and seen["offloads"] == [] and seen["digit"] == seen["label"], seen
    assert not [r for r in requests[sent:] if "/api/run/" in r]


def test_offline_on_a_first_visit_open_is_refused_as_offline(context: BrowserContext, hybrid_server) -> None:
    page, _ = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    page.evaluate("() => import('/waystation.js')")  # the page has its code; then the network goes
    context.set_offline(True)
    seen = page.evaluate(OPEN_AND_CALL, {"account": account(hybrid_server), "bundle": "digits", "installTimeoutMs": None})
    # Neither side can answer: nothing is installed yet (not even the service worker) and the server is out of reach.
    assert not seen["opened"] and seen["waystationError"] and seen["name"] == "offline", seen
    assert seen["message"].startswith('open(): this device is offline: bundle "digits" cannot be installed or opened on it'), seen
    assert "the server cannot be reached to answer instead" in seen["message"], seen


def test_offline_a_bundle_never_installed_is_refused_as_offline(context: BrowserContext, hybrid_server) -> None:
    page, _ = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    user = account(hybrid_server)
    page.evaluate("""async (account) => {  // the service worker and another bundle are installed
      const { open } = await import("/waystation.js");
      (await open({ bundle: "unsure", channel: "hybrid", sync: account })).close();
    }""", user)
    context.set_offline(True)
    seen = page.evaluate(OPEN_AND_CALL, {"account": user, "bundle": "digits", "installTimeoutMs": 3_000})
    assert not seen["opened"] and seen["waystationError"] and seen["name"] == "offline", seen
    assert seen["details"]["device"] == "network", seen  # the device's own reason rides along
    assert "gave up installing after 3 s without the network" in seen["message"], seen
    assert "the server cannot be reached to answer instead" in seen["message"], seen


def test_offline_a_bundle_the_device_cannot_open_is_refused_as_offline(context: BrowserContext, hybrid_server) -> None:
    page, _ = first_visit(context, hybrid_server)
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    page.evaluate("""async (account) => {
      const { open } = await import("/waystation.js");
      window.app = await open({ bundle: "needy", channel: "hybrid", sync: account, fallback: "auto" });
      window.deviceError = await window.app.ready.then(() => null, (e) => e.name);
    }""", account(hybrid_server))
    online = page.evaluate("async () => ({ total: await app.call('total', { values: [1, 2, 3.5] }), ranOn: app.lastCall.ranOn })")
    # The device cannot import the workflow (no numpy in Pyodide): the server answers for it.
    assert page.evaluate("window.deviceError") == "workflow-import-failed"
    assert online == {"total": 6.5, "ranOn": "server"}, online
    context.set_offline(True)
    seen = page.evaluate("""async () => {
      try {
        return { answered: await app.call("total", { values: [1] }) };
      } catch (e) {
        return { name: e.name, message: e.message, details: e.details };
      }
    }""")
    assert seen["name"] == "offline" and seen["details"]["device"] == "workflow-import-failed", seen
    assert seen["message"].startswith('total(): this device is offline: bundle "needy" cannot be installed or opened'), seen
    assert "numpy" in seen["message"] and seen["message"].endswith("and the server cannot be reached to answer instead"), seen
