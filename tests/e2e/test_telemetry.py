"""Telemetry on the device in a real browser, against the real server (POST /api/telemetry, its store).

A fresh server publishes "tele" 1.0.0 on stable: a workflow whose `wait(ms)` busy-waits `ms`
milliseconds (known latencies), raises for a negative `ms` (a workflow-error) and records the
declared signal `score`; its manifest declares an alert "slow" on wait's p95 above 100 ms after
5 calls (a call of this shared machine's busiest moments stays well under it) and one "drift" on
the PSI of `score` against a uniform reference above 0.5. Every request of each session is recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Request
from playwright.sync_api import Error as PlaywrightError

from waystation.bundles.builder import manifest_text
from waystation.bundles.chunks import split
from waystation.bundles.signing import dev_key, sign_manifest
from waystation.server.registry import Registry
from waystation.server.telemetry_store import LogStore

from .conftest import BOOT_TIMEOUT_MS, wait_ready

PROBE_PAGE = "/telemetry-probe.html"  # a blank page of the site's origin: each test opens the bundle itself
WORKFLOW = b'''import time

from waystation.device import export


@export
def wait(ctx, ms: float, score: float = 0.5) -> dict:
    """Busy-wait `ms` milliseconds; a negative `ms` fails."""
    ctx.metrics.record("score", score)
    ctx.log.warning("waited %s ms", ms)
    if ms < 0:
        raise ValueError("ms must not be negative")
    start = time.perf_counter()
    while (time.perf_counter() - start) * 1000 < ms:
        pass
    return {"waited": ms}
'''
TELEMETRY = {
    "signals": {"score": {"edges": ["0.25", "0.5", "0.75"], "reference": [1, 1, 1, 1]}},
    "alerts": [{"name": "slow", "function": "wait", "p95_ms": "100", "min_calls": 5},
               {"name": "drift", "signal": "score", "psi": "0.5", "min_calls": 5}],
}
GAMMA = 1.04

OPEN = """async ({ telemetry, bundle }) => {
  const { open } = await import("/waystation.js");
  window.checkins = [];  // what the service worker told after its check-ins, if it makes any
  navigator.serviceWorker.addEventListener("message", (e) => e.data?.type === "waystation-checkin" && checkins.push(e.data));
  window.alerts = [];
  window.app = await open({ bundle: bundle ?? "tele", telemetry });
  app.addEventListener("alert", (e) => alerts.push(e.detail));
  return app.version;
}"""
CALLS = """async (calls) => {
  const seen = [];
  for (const args of calls) {
    const started = performance.now();
    let error = null;
    try {
      await app.call("wait", args);
    } catch (e) {
      error = e.name;
    }
    seen.push({ ms: performance.now() - started, error });
  }
  return seen;
}"""


def make_tele(root: Path) -> Path:
    """tele 1.0.0: the workflow above and a manifest declaring its telemetry, signed with the dev key."""
    folder = root / "tele" / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "workflow.py").write_bytes(WORKFLOW)
    manifest = {
        "format": 2, "name": "tele", "version": "1.0.0", "parent": None, "runtime": "0.1.0",
        "workflow": "workflow.py", "models": {}, "telemetry": TELEMETRY,
        "files": [{"path": "workflow.py", "size": len(WORKFLOW), "sha256": hashlib.sha256(WORKFLOW).hexdigest(),
                   "chunks": [list(c) for c in split(WORKFLOW)]}],
    }
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(manifest, dev_key())))
    return folder


@pytest.fixture(scope="module")
def tele_server(tmp_path_factory: pytest.TempPathFactory, start_server) -> Iterator:
    server = start_server()
    Registry(server.data).publish(make_tele(tmp_path_factory.mktemp("tele")), "stable")
    yield server
    server.stop()


def probe(context: BrowserContext, server) -> tuple[Page, list[Request]]:
    """A blank page of the server's origin, and every request the context makes from now on."""
    requests: list[Request] = []
    context.on("request", lambda r: requests.append(r))
    context.route(server.url + PROBE_PAGE, lambda route: route.fulfill(
        content_type="text/html", body="<!doctype html><title>telemetry probe</title>"))
    page = context.new_page()
    page.set_default_timeout(BOOT_TIMEOUT_MS)
    page.goto(server.url + PROBE_PAGE)
    return page, requests


def settle_check_ins(page: Page) -> None:
    """Wait for the check-in a service worker that makes them (sw/checkin.js) makes at open, so that
    what it says about remote logging is said before the test says otherwise."""
    if page.evaluate("fetch('/sw/checkin.js').then((r) => r.ok)"):
        page.wait_for_function("window.checkins.length > 0", timeout=30_000)


def to_server(requests: list[Request]) -> list[Request]:
    return [r for r in requests if "/api/telemetry" in r.url or "/api/logs" in r.url]


def quantile(samples: list[float], q: float) -> float:
    """The sample the contract's quantile reads (rank q * (n - 1), the first bucket past it)."""
    ordered = sorted(samples)
    return ordered[int(q * (len(ordered) - 1))]


def hist_quantile(h: dict, q: float) -> float:
    rank, seen = q * (h["n"] - 1), 0
    for key in sorted(h["b"], key=int):
        seen += h["b"][key]
        if seen > rank:
            return min(max(2 * GAMMA ** int(key) / (GAMMA + 1), h["min"]), h["max"])
    return h["max"]


def reports_received(server, report_id: str) -> int:
    with sqlite3.connect(server.data / "telemetry.sqlite3") as db:
        return db.execute("SELECT count(*) FROM reports WHERE id = ?", (report_id,)).fetchone()[0]


def test_with_telemetry_off_nothing_is_collected_or_sent(context: BrowserContext, tele_server) -> None:
    page, requests = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": False})
    seen = page.evaluate(CALLS, [{"ms": 1}, {"ms": -1}, {"ms": 2, "score": 0.9}])
    assert [s["error"] for s in seen] == [None, "workflow-error", None]
    assert page.evaluate("app.telemetry.pending()") == []
    assert page.evaluate("app.telemetry.flush()") == {"sent": 0, "pending": 0}
    # A check-in saying logging is on changes nothing either: remote logs go with the opt-in.
    assert page.evaluate("app.telemetry.setRemoteLogging({ level: 'debug' })") == {"level": None}
    page.evaluate(CALLS, [{"ms": 1}])
    page.evaluate("app.close()")
    page.close()  # pagehide too
    assert to_server(requests) == []
    databases = context.new_page()
    databases.goto(tele_server.url + PROBE_PAGE)
    assert "waystation-telemetry" not in databases.evaluate("indexedDB.databases().then((d) => d.map((x) => x.name))")


def test_a_report_matches_the_calls_made_and_arrives_once_across_offline_and_reload(context: BrowserContext, tele_server) -> None:
    page, requests = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": True})
    waits = [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25, 30, 3, 5, 7, 9, 11, 13, 15, 40]
    calls = [{"ms": ms, "score": (i % 4) / 4 + 0.1} for i, ms in enumerate(waits)] + [{"ms": -1}] * 3 + [{"ms": "x"}]
    seen = page.evaluate(CALLS, calls)
    assert [s["error"] for s in seen[-4:]] == ["workflow-error"] * 3 + ["invalid-argument"]

    [report] = page.evaluate("app.telemetry.pending()")
    assert report["schema"] == 1 and len(report["installation"]) == 32 and report["start"] <= report["end"]
    assert set(report["device"]) == {"cores", "memory", "isolated", "threads", "browser"}
    assert report["device"]["browser"] == "chromium"
    [section] = report["bundles"]
    assert (section["bundle"], section["version"]) == ("tele", "1.0.0")
    wait = section["functions"]["wait"]
    assert wait["calls"] == len(calls)
    assert wait["errors"] == {"workflow-error": 3, "invalid-argument": 1}
    assert wait["ranOn"] == {"device": len(calls)}
    latency, mine = wait["latency"], [s["ms"] for s in seen]
    assert latency["n"] == len(calls)
    for q in (0.5, 0.95, 0.99):
        # The report's quantile is within the histogram's 2% of the one measured here; the page's
        # own clock starts and stops a hair inside this one (0.5 ms allowed for that).
        assert abs(hist_quantile(latency, q) - quantile(mine, q)) <= 0.02 * quantile(mine, q) + 0.5, (q, latency, sorted(mine))
    assert 0 <= sum(mine) - latency["sum"] <= 0.02 * sum(mine) + 1.0 * len(mine)  # each call timed inside ours
    # Signals come with a call's answer: the failed calls recorded none.
    assert section["signals"]["score"] == {"n": len(waits), "counts": [5, 5, 5, 5]}
    assert set(section["startup"]) == {"open", "python", "models"}
    assert json.dumps(report).count("waited") == 0  # no result, no log line

    # Offline: a flush keeps it; after the page is gone and the network back, the next page sends it, once.
    context.set_offline(True)
    assert page.evaluate("app.telemetry.flush()") == {"sent": 0, "pending": 1}
    page.close()
    context.set_offline(False)
    assert reports_received(tele_server, report["id"]) == 0
    again = context.new_page()
    again.set_default_timeout(BOOT_TIMEOUT_MS)
    again.goto(tele_server.url + PROBE_PAGE)
    again.evaluate(OPEN, {"telemetry": True})
    gone = "(id) => app.telemetry.pending().then((r) => !r.some((x) => x.id === id))"  # its own start-up stays pending
    again.wait_for_function(gone, arg=report["id"], timeout=30_000)
    assert reports_received(tele_server, report["id"]) == 1
    answered = [r for r in to_server(requests) if r.response() is not None and report["id"] in (r.post_data or "")]
    assert len(answered) == 1 and answered[0].response().status == 202


def test_two_tabs_send_a_waiting_report_once(context: BrowserContext, tele_server) -> None:
    page, requests = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": True})
    page.evaluate(CALLS, [{"ms": 1}] * 3)
    context.set_offline(True)
    [report] = page.evaluate("app.telemetry.pending()")
    page.close()
    context.set_offline(False)
    tabs = [context.new_page() for _ in range(2)]
    for tab in tabs:
        tab.set_default_timeout(BOOT_TIMEOUT_MS)
        tab.goto(tele_server.url + PROBE_PAGE)
    for tab in tabs:
        tab.evaluate("(o) => { window.opening = (" + OPEN + ")(o); }", {"telemetry": True})
    for tab in tabs:
        tab.wait_for_function("(id) => window.app && app.telemetry.pending().then((r) => !r.some((x) => x.id === id))",
                              arg=report["id"], timeout=60_000)
    posted = [r for r in to_server(requests) if report["id"] in (r.post_data or "")]
    assert len(posted) == 1, [r.url for r in posted]
    assert reports_received(tele_server, report["id"]) == 1


def test_a_declared_alert_fires_once_when_crossed(context: BrowserContext, tele_server) -> None:
    page, _ = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": False})  # alerts are the page's, opted in or not
    spread = [{"ms": 0, "score": s} for s in (0.1, 0.3, 0.6, 0.9, 0.2, 0.7)]  # as the reference: no drift
    fast = page.evaluate(CALLS, spread)
    assert page.evaluate("alerts") == [], fast  # p95 of quick calls: under 100 ms
    page.evaluate(CALLS, [{"ms": 250, "score": 0.6}] * 4)  # 4 of 10 calls slow: p95 crosses 100 ms
    page.evaluate(CALLS, [{"ms": 250, "score": 0.6}] * 4)  # and stays above: no second event
    fired = page.evaluate("alerts")
    assert sorted(a["name"] for a in fired) == ["drift", "slow"]  # each once; scores piling into one bin drifted
    drift, alert = sorted(fired, key=lambda a: a["name"])
    assert {k: drift[k] for k in ("name", "metric", "threshold")} == {"name": "drift", "metric": "psi", "threshold": 0.5}
    assert drift["value"] > 0.5
    assert {k: alert[k] for k in ("name", "bundle", "version", "metric", "threshold")} == {
        "name": "slow", "bundle": "tele", "version": "1.0.0", "metric": "p95_ms", "threshold": 100}
    assert 100 < alert["value"] <= 2000  # the p95 when it crossed: a slow call's, or the slowest quick one's


def test_remote_logs_are_uploaded_only_while_the_check_in_says_so(context: BrowserContext, tele_server) -> None:
    page, requests = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": True})
    settle_check_ins(page)
    page.evaluate(CALLS, [{"ms": 1}])  # logged while remote logging is off: never sent
    page.evaluate("app.telemetry.setRemoteLogging({ level: 'warning' })")
    page.evaluate(CALLS, [{"ms": 3}, {"ms": 4}])
    flushed = page.evaluate("app.telemetry.flush()")
    logs = [r for r in to_server(requests) if "/api/logs" in r.url]
    assert len(logs) == 1
    upload = json.loads(logs[0].post_data or "{}")
    assert (upload["schema"], upload["bundle"], upload["version"]) == (1, "tele", "1.0.0")
    assert [line["message"] for line in upload["lines"]] == ["waited 3 ms", "waited 4 ms"]
    assert {line["level"] for line in upload["lines"]} == {"warning"}
    # The server has remote logging off for tele: it says 403, and the device stops.
    assert logs[0].response().status == 403 and flushed["logLines"] == 0
    assert page.evaluate("app.telemetry.flush()")["logLines"] == 0  # nothing kept since
    assert page.evaluate("app.telemetry.setRemoteLogging(null)")["level"] is None

    # On for the channel (as `waystation bundle logging` turns it on) and said by a check-in: the next lines arrive.
    Registry(tele_server.data).set_logging("tele", "stable", 100, "warning")
    try:
        # As the service worker tells its pages after a check-in (this page listens for it).
        page.evaluate("""navigator.serviceWorker.dispatchEvent(new MessageEvent("message", { data: {
          type: "waystation-checkin", bundle: "tele", status: { logging: { level: "warning" } } } }))""")
        mark = secrets.token_hex(2)
        page.evaluate(CALLS, [{"ms": f"1{mark}"}, {"ms": 5}])  # a bad argument logs nothing; 5 does
        assert page.evaluate("app.telemetry.flush()")["logLines"] == 1
        newest = LogStore(tele_server.data).recent("tele", limit=1)[0]
        assert (newest["version"], newest["level"], newest["message"]) == ("1.0.0", "warning", "waited 5 ms")
    finally:
        Registry(tele_server.data).set_logging("tele", "stable", 0, "warning")


def test_a_demo_session_sends_neither_the_typed_text_nor_the_answers(context: BrowserContext, server) -> None:
    requests: list[Request] = []
    context.on("request", lambda r: requests.append(r))
    page = context.new_page()
    page.goto(server.url + "/?telemetry")
    wait_ready(page)
    note, query = f"Remember the blue umbrella {secrets.token_hex(3)}", f"where is my umbrella {secrets.token_hex(3)}"
    page.fill("#note-text", note)
    page.click("#add")
    page.wait_for_function("[...document.querySelectorAll('#notes li')].some((li) => li.textContent.includes('blue umbrella'))",
                           timeout=BOOT_TIMEOUT_MS)
    page.fill("#query", query)
    page.click("#search")
    page.wait_for_selector("#results li")
    answers = [t.strip() for t in page.locator("#results li, #notes li").all_text_contents() if t.strip()]
    [report] = page.evaluate("app.telemetry.pending()")
    [section] = report["bundles"]
    assert section["bundle"] == "minilm" and section["functions"]  # the session's calls were counted
    # Each model run was timed in the worker, under the model's name in the manifest.
    assert section["models"] and all(m["runs"] > 0 and m["latency"]["n"] == m["runs"] for m in section["models"].values())
    assert "?" not in section["models"]
    page.evaluate("app.telemetry.flush()")
    sent = [r for r in requests if "/api/telemetry" in r.url]
    assert len(sent) == 1 and sent[0].response().status == 202
    secrets_seen = [note, query, *answers, *note.split()[-1:], *query.split()[-1:]]
    for request in requests:
        carried = request.url + (request.post_data or "")
        for text in secrets_seen:
            assert text not in carried, (text, request.url)


def test_the_installation_id_is_kept_and_changes_with_the_month(context: BrowserContext, tele_server) -> None:
    page, _ = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": True})
    page.evaluate(CALLS, [{"ms": 1}])
    first = page.evaluate("app.telemetry.pending()")[-1]["installation"]
    page.evaluate(CALLS, [{"ms": 1}])
    assert page.evaluate("app.telemetry.pending()")[-1]["installation"] == first  # kept on the device
    # The stored id as if made last month: the next report has a new one.
    page.evaluate("""() => new Promise((resolve, reject) => {
      const request = indexedDB.open("waystation-telemetry");
      request.onsuccess = () => {
        const tx = request.result.transaction("meta", "readwrite");
        tx.objectStore("meta").put({ id: "0".repeat(32), month: "2000-01" }, "installation");
        tx.oncomplete = resolve;
        tx.onerror = reject;
      };
    })""")
    page.evaluate(CALLS, [{"ms": 1}])
    renewed = page.evaluate("app.telemetry.pending()")[-1]["installation"]
    assert len(renewed) == 32 and renewed not in (first, "0" * 32)


def test_the_outbox_is_bounded_the_oldest_reports_dropped(context: BrowserContext, tele_server) -> None:
    page, requests = probe(context, tele_server)
    kept = page.evaluate("""async () => {
      const { MAX_REPORTS, Outbox } = await import("/telemetry.js");
      // Ids whose key order is not their age (r10 sorts before r2): the age decides.
      for (let i = 0; i < MAX_REPORTS + 5; i++) await Outbox.put(`r${i}`, JSON.stringify({ id: `r${i}` }));
      return { max: MAX_REPORTS, ids: (await Outbox.all()).map((r) => r.id) };
    }""")
    assert len(kept["ids"]) == kept["max"]
    assert kept["ids"] == [f"r{i}" for i in range(5, kept["max"] + 5)]  # r0..r4 dropped, the rest oldest first
    assert to_server(requests) == []  # keeping is not sending



@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_calls_not_yet_reported_when_the_page_goes_away_are_sent_by_the_next_page(context: BrowserContext, tele_server,
                                                                                    offline: bool) -> None:
    page, requests = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": True})
    page.evaluate(CALLS, [{"ms": 1}] * 7)
    [first] = page.evaluate("app.telemetry.pending()")  # sealed, kept, not sent
    page.evaluate(CALLS, [{"ms": 1}] * 5)  # neither sealed nor flushed: the page goes away with them
    if offline:  # only the outbox can keep them: no request leaves
        context.set_offline(True)
        page.goto("about:blank")
        context.set_offline(False)
        page.goto(tele_server.url + PROBE_PAGE)
    else:  # the page may send them itself as it goes (keepalive), and keeps them too
        page.reload()
    page.evaluate(OPEN, {"telemetry": True})  # a page that opts in sends what earlier ones left

    def ours() -> list[dict]:
        # Accepted (202), or already had (200): the page going away may have sent it itself.
        bodies = {(b := json.loads(r.post_data or "{}"))["id"]: b for r in requests
                  if "/api/telemetry" in r.url and r.response() is not None and r.response().status in (200, 202)}
        return [b for b in bodies.values() if b["installation"] == first["installation"]]

    for _ in range(150):
        if sum(b["bundles"][0]["functions"].get("wait", {}).get("calls", 0) for b in ours()) >= 12:
            break
        page.wait_for_timeout(200)
    sent = ours()
    assert sum(b["bundles"][0]["functions"].get("wait", {}).get("calls", 0) for b in sent) == 12, sent
    assert first["id"] in [b["id"] for b in sent] and len(sent) == 2
    for report in sent:
        assert reports_received(tele_server, report["id"]) == 1


CHECKPOINTED_CALLS = """() => new Promise((resolve, reject) => {
  const request = indexedDB.open("waystation-telemetry");
  request.onerror = () => reject(request.error);
  request.onsuccess = () => {
    const get = request.result.transaction("open").objectStore("open").getAll();
    get.onsuccess = () => {
      request.result.close();
      resolve(get.result.map((c) => JSON.parse(c.body).bundles[0].functions.wait?.calls ?? 0));
    };
  };
})"""


def test_calls_counted_before_the_page_crashes_are_sent_by_the_next_page(context: BrowserContext, tele_server) -> None:
    page, requests = probe(context, tele_server)
    page.evaluate(OPEN, {"telemetry": True})
    page.evaluate(CALLS, [{"ms": 1}] * 4)
    # The open period is checkpointed as calls come; once it holds them, the page dies with no
    # pagehide, no unload, nothing sent: its renderer crashes.
    page.wait_for_function(f"({CHECKPOINTED_CALLS})().then((calls) => calls.includes(4))")
    assert not [r for r in requests if "/api/telemetry" in r.url]  # nothing sent: the checkpoint alone holds them
    with page.expect_event("crash", timeout=30_000), contextlib.suppress(PlaywrightError):
        page.goto("chrome://crash", timeout=10_000)

    second, _ = probe(context, tele_server)
    second.evaluate(OPEN, {"telemetry": True})  # its sender adopts the dead page's checkpoint and sends it

    def sent() -> list[dict]:
        return [json.loads(r.post_data or "{}") for r in requests
                if "/api/telemetry" in r.url and r.response() is not None and r.response().status == 202]

    second.wait_for_function("app.telemetry.flush().then((r) => r.pending === 0)")
    for _ in range(50):
        if sent():
            break
        second.wait_for_timeout(100)
    [report] = [b for b in sent() if b["bundles"][0]["functions"].get("wait")]
    assert report["bundles"][0]["functions"]["wait"]["calls"] == 4
    assert reports_received(tele_server, report["id"]) == 1
    assert second.evaluate(CHECKPOINTED_CALLS) == []  # adopted: no checkpoint is left to send twice


def test_a_check_in_that_says_logging_is_on_has_the_lines_uploaded(context: BrowserContext, tele_server) -> None:
    Registry(tele_server.data).set_logging("tele", "stable", 100, "info")  # every device of the channel
    try:
        page, _ = probe(context, tele_server)
        if not page.evaluate("fetch('/sw/checkin.js').then((r) => r.ok)"):
            pytest.skip("this site's service worker makes no check-ins")
        page.evaluate(OPEN, {"telemetry": True})
        settle_check_ins(page)  # the service worker's check-in at open, told to the page
        assert page.evaluate("checkins.at(-1).status.logging") == {"level": "info"}
        ms = 1 + secrets.randbelow(1000) / 1000
        page.evaluate(CALLS, [{"ms": ms}])
        page.wait_for_function("app.telemetry.flush().then((r) => r.logLines === 1)", timeout=30_000)
        messages = [line["message"] for line in LogStore(tele_server.data).recent("tele", limit=20)]
        assert f"waited {ms} ms" in messages
    finally:
        Registry(tele_server.data).set_logging("tele", "stable", 0, "info")
