"""Background updates and revoke in a real browser against the real server: the service worker's
check-ins stage a newly published version without the page calling update(), tell the page, and
activate it by the page's policy; a revoked version stops answering at the next check-in and the
previous one answers; a device holding only the revoked version refuses calls with "revoked".

Each test opens the demo page on a channel of its own (`?channel=`: no release there, so the site's
digits 1.0.0 is installed), then a second App on the same device with background updates on and a
short check interval, and publishes versions into the running server's registry. Versions are
1.0.1's files (a new workflow function, a 1 MiB data file) under numbers of each test's own, so
that a revoke in one test touches no other.

Last, the whole loop with the server's telemetry: four browser contexts as devices report their
calls, and a guarded 50% rollout of a release whose calls fail, then of one that is slow, halts
by itself; the devices on it go back to the previous version at their next check-in.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from waystation.bundles.builder import build_bundle, manifest_text
from waystation.bundles.signing import dev_key, sign_manifest
from waystation.server.registry import Registry, bucket

from .conftest import BOOT_TIMEOUT_MS, csp_checked, wait_ready
from .test_bundle_updates import ROOT, make_v2

# A second App of digits on this page, with background updates; its events kept in `fleetEvents`.
OPEN_FLEET = """async (options) => {
  const { open } = await import("/waystation.js");
  window.fleetEvents = [];
  window.fleet = await open({ bundle: "digits", ...options });
  const kinds = ["checkin", "updatestaged", "updateactivated", "updatedeferred", "updateavailable", "updatefailed", "revoked",
                 "withdrawn"];
  const plain = (detail) => JSON.parse(JSON.stringify(detail, (k, v) => (k === "error" ? String(v) : v)));
  for (const type of kinds) fleet.addEventListener(type, (e) => fleetEvents.push({ type, detail: plain(e.detail) }));
  return fleet.version;
}"""
ANSWER = """async (name) => {
  const app = window[name];
  try {
    const sample = (await app.call("samples"))[0];
    const [answer] = await app.call("classify_features", { features: [sample.pixels] });
    return { ok: true, version: app.version, right: answer.digit === sample.label };
  } catch (e) {
    return { ok: false, name: e.name, message: e.message, version: app.version };
  }
}"""
CHECK_MS = 400  # the page's check interval here; 900 s (the server's checkAfterSeconds) by default


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_v2(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def fleet_server(start_server) -> Iterator[Any]:
    server = start_server()  # a registry of its own: the site's digits 1.0.0 on stable
    yield server
    server.stop()


def renumbered(built: Path, tmp: Path, version: str) -> Path:
    """A built version's files as digits `version` (parent 1.0.0), signed with the site's key."""
    folder = shutil.copytree(built, tmp / "digits" / version)
    data = json.loads((folder / "manifest.json").read_text())
    data.update(version=version, parent="1.0.0")
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(data, dev_key())))
    return folder


def boot(context: BrowserContext, server: Any, channel: str, **fleet: Any) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/digits.html?channel={channel}")
    wait_ready(page)
    assert page.evaluate(OPEN_FLEET, {"channel": channel, "checkIntervalMs": CHECK_MS, **fleet}) == "1.0.0"
    assert not errors, errors
    return page


def events(page: Page, kind: str) -> list[dict]:
    return [e["detail"] for e in page.evaluate("fleetEvents") if e["type"] == kind]


def wait_version(page: Page, version: str, app: str = "fleet") -> None:
    page.wait_for_function(f"window.{app}.version === {json.dumps(version)}", timeout=BOOT_TIMEOUT_MS)


def test_background_updates_stage_a_new_release_and_activate_it_without_update(context, fleet_server, v2, tmp_path):
    page = boot(context, fleet_server, "fleet-now", updates="now")
    page.wait_for_function("fleetEvents.some((e) => e.type === 'checkin')", timeout=30_000)
    assert events(page, "checkin")[0]["status"]["version"] is None  # nothing released on this channel yet
    Registry(fleet_server.data).publish(renumbered(v2, tmp_path, "1.1.0"), "fleet-now")
    wait_version(page, "1.1.0")
    [staged] = events(page, "updatestaged")
    assert (staged["from"], staged["to"], staged["policy"], staged["state"]) == ("1.0.0", "1.1.0", "now", "staged")
    assert staged["fetchedBytes"] > 1024 * 1024 > staged["totalBytes"] - staged["fetchedBytes"]  # a delta: 1.0.0's chunks kept
    assert events(page, "updateactivated") == [{"from": "1.0.0", "to": "1.1.0", "when": "now"}]
    assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.1.0", "right": True}
    assert page.evaluate("fleet.call('release_notes')") == "1.0.1: calibration data"
    held = page.evaluate("fleet.versions()")
    assert (held["active"], held["previous"], held["staged"]) == ("1.1.0", "1.0.0", None)
    assert page.evaluate(ANSWER, "app")["version"] == "1.0.0"  # the demo's App has updates off: it stays
    page.reload()  # and the next load opens the active version
    wait_ready(page)
    assert page.evaluate("app.version") == "1.1.0"


def test_ask_offers_the_update_and_activates_it_when_asked(context, fleet_server, v2, tmp_path):
    page = boot(context, fleet_server, "fleet-ask", updates="ask")
    page.evaluate("fleet.addEventListener('updateavailable', (e) => { window.offer = e.detail; })")
    Registry(fleet_server.data).publish(renumbered(v2, tmp_path, "1.2.0"), "fleet-ask")
    page.wait_for_function("Boolean(window.offer)", timeout=BOOT_TIMEOUT_MS)
    page.wait_for_timeout(3 * CHECK_MS)  # more check-ins: the offer is made once, and nothing activates by itself
    assert [(e["from"], e["to"]) for e in events(page, "updateavailable")] == [("1.0.0", "1.2.0")]
    assert page.evaluate("fleet.version") == "1.0.0"
    assert page.evaluate("offer.activate().then((r) => [r.from, r.to, r.activated])") == ["1.0.0", "1.2.0", "now"]
    assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.2.0", "right": True}


def test_a_revoked_release_stops_answering_and_the_previous_one_answers(context, fleet_server, v2, tmp_path):
    page = boot(context, fleet_server, "fleet-revoke", updates="now")
    registry = Registry(fleet_server.data)
    registry.publish(renumbered(v2, tmp_path, "1.3.0"), "fleet-revoke")
    wait_version(page, "1.3.0")
    registry.revoke("digits", "1.3.0", reason="labels swapped")
    wait_version(page, "1.0.0")
    [revoked] = events(page, "revoked")
    assert revoked == {"version": "1.3.0", "to": "1.0.0",
                       "message": "digits 1.3.0 was revoked by its publisher; digits 1.0.0 answers now"}
    assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.0.0", "right": True}
    held = page.evaluate("fleet.versions()")
    assert (held["active"], held["previous"], held["staged"]) == ("1.0.0", None, None)
    assert [v["version"] for v in held["versions"]] == ["1.0.0"]  # the revoked version is let go
    page.wait_for_timeout(3 * CHECK_MS)  # and never staged again: the channel no longer serves it
    assert page.evaluate("fleet.version") == "1.0.0" and len(events(page, "updatestaged")) == 1


def test_a_device_holding_only_a_revoked_version_refuses_calls_until_a_good_one_arrives(context, start_server, v2, tmp_path):
    server = start_server()  # its own registry: this test revokes the site's 1.0.0
    page = boot(context, server, "stable")  # updates off: revoke applies all the same
    registry = Registry(server.data)
    registry.revoke("digits", "1.0.0", reason="bad model")
    page.wait_for_function("fleetEvents.some((e) => e.type === 'revoked')", timeout=30_000)
    message = "digits 1.0.0 was revoked by its publisher and no earlier version is on this device"
    assert events(page, "revoked") == [{"version": "1.0.0", "to": None, "message": message}]
    for app in ("fleet", "app"):  # the demo's App heard the same check-in
        assert page.evaluate(ANSWER, app) == {"ok": False, "name": "revoked", "message": message, "version": "1.0.0"}
    reopen = ("import('/waystation.js').then((m) => m.open({ bundle: 'digits' }))"
              ".then((a) => a.version, (e) => [e.name, e.message])")
    assert page.evaluate(reopen) == ["revoked", message]  # a new open() does not run it either
    registry.publish(renumbered(v2, tmp_path, "1.4.0"), "stable")
    wait_version(page, "1.4.0")  # anything good beats refusing: activated though updates are off
    assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.4.0", "right": True}
    held = page.evaluate("fleet.versions()")
    assert (held["active"], held["previous"]) == ("1.4.0", None), held


def test_a_rolled_back_release_is_left_at_the_next_check_in_whatever_the_update_policy(context, fleet_server, v2, tmp_path):
    """`waystation bundle rollback` reaches a device whose page never asks for updates (updates off)."""
    page = boot(context, fleet_server, "fleet-withdraw")  # updates off, the default
    registry = Registry(fleet_server.data)
    registry.release("digits", "1.0.0", "fleet-withdraw")
    registry.publish(renumbered(v2, tmp_path, "1.7.0"), "fleet-withdraw")
    assert page.evaluate("fleet.update({ channel: 'fleet-withdraw' }).then((r) => r.to)") == "1.7.0"  # the page asked once
    assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.7.0", "right": True}
    registry.rollback("digits", "fleet-withdraw")
    wait_version(page, "1.0.0")  # no update() call: the check-in took it back
    assert events(page, "withdrawn") == [{"version": "1.7.0", "to": "1.0.0",
                                          "message": "digits 1.7.0 was withdrawn from its channel; digits 1.0.0 answers now"}]
    assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.0.0", "right": True}
    held = page.evaluate("fleet.versions()")
    assert held["active"] == "1.0.0" and events(page, "revoked") == []
    page.wait_for_timeout(3 * CHECK_MS)  # and it stays back: the channel serves 1.0.0
    assert page.evaluate("fleet.version") == "1.0.0" and len(events(page, "withdrawn")) == 1


def test_data_saver_defers_a_large_update_and_says_why(context, fleet_server, v2, tmp_path, chunk_requests):
    context.add_init_script("Object.defineProperty(NetworkInformation.prototype, 'saveData', { get: () => true })")
    page = boot(context, fleet_server, "fleet-saver", updates="now")
    chunk_requests.clear()
    Registry(fleet_server.data).publish(renumbered(v2, tmp_path, "1.5.0"), "fleet-saver")
    page.wait_for_function("fleetEvents.some((e) => e.type === 'updatedeferred')", timeout=30_000)
    [deferred] = events(page, "updatedeferred")
    assert (deferred["to"], deferred["reason"]) == ("1.5.0", "data-saver") and deferred["fetchBytes"] > 1024 * 1024
    assert deferred["message"].startswith("digits 1.5.0 waits: it needs 1.0 MiB and the browser is saving data")
    page.wait_for_timeout(3 * CHECK_MS)
    assert chunk_requests == [] and page.evaluate("fleet.version") == "1.0.0"
    assert len(events(page, "updatedeferred")) == 1  # told once


# ---- automatic halts: devices' telemetry stops a guarded rollout, and its devices move back ----

FEATURES = [[0.0] * 64]
CALL_AND_REPORT = """async (features) => {
  const codes = [];
  for (let i = 0; i < 6; i++) {
    try { await fleet.call("classify_features", { features }); codes.push("ok"); } catch (e) { codes.push(e.name); }
  }
  const sent = await fleet.telemetry.flush();
  return { codes, sent: sent.sent, version: fleet.version };
}"""


def faulty_build(tmp: Path, kind: str) -> Path:
    """digits built with a classify_features that raises ("broken") or takes 300 ms more ("slow"); renumber it."""
    source = shutil.copytree(ROOT / "models" / "digits", tmp / f"{kind}-source", ignore=shutil.ignore_patterns("__pycache__"))
    fault = {"broken": '    raise RuntimeError("this release is broken on purpose")\n',
             "slow": "    import time\n    until = time.perf_counter() + 0.3\n"
                     "    while time.perf_counter() < until:\n        pass\n"}[kind]
    text = (source / "workflow.py").read_text()
    head = 'async def classify_features(ctx, features: list[list[float]]) -> list[dict]:\n'
    doc = '    """Classify a batch of ready 8x8 feature vectors (64 values in 0-16 each), as in the data set."""\n'
    assert head + doc in text
    (source / "workflow.py").write_text(text.replace(head + doc, head + doc + fault))
    config = (source / "bundle.toml").read_text().replace('version = "1.0.0"', 'version = "1.9.0"\nparent = "1.0.0"')
    (source / "bundle.toml").write_text(config)
    return build_bundle(source, tmp / f"{kind}-built", progress=lambda _m: None, key=dev_key(),
                        chunk_store=tmp / f"{kind}-built" / "chunks")


def version_for(devices: list[str], inside: list[bool], prefix: str) -> str:
    """A version number whose 50% rollout includes exactly the devices marked inside (buckets are per version)."""
    for n in range(10_000):
        version = f"{prefix}.{n}"
        if [bucket(d, "digits", version) < 50 for d in devices] == inside:
            return version
    raise AssertionError("no version number splits these devices as asked")


def test_a_guarded_rollout_halts_by_itself_and_its_devices_move_back(browser, start_server, tmp_path):
    server = start_server()  # its own registry and telemetry
    registry = Registry(server.data)
    builds = {kind: faulty_build(tmp_path, kind) for kind in ("broken", "slow")}
    with contextlib.ExitStack() as stack:
        # Four devices: each browser context has its own storage, so its own rollout id and installation.
        pages = [boot(stack.enter_context(csp_checked(browser)), server, "stable", updates="now", telemetry=True)
                 for _ in range(4)]
        ids = [page.evaluate("fleet.versions().then((v) => v.device)") for page in pages]
        inside = [True, True, False, False]
        for kind, prefix, rules, reason in [("broken", "1.1", "errors>50%,devices>=2", "halted: error rate 100.0% > 50%"),
                                            ("slow", "1.2", "p95>3x,devices>=2", "halted: p95 ")]:
            version = version_for(ids, inside, prefix)
            registry.add_version(renumbered(builds[kind], tmp_path / kind, version))
            registry.release("digits", version, "stable", 50, halt_if=rules)
            for page, new in zip(pages, inside, strict=True):
                if new:
                    wait_version(page, version)
            for page, new in zip(pages, inside, strict=True):
                out = page.evaluate(CALL_AND_REPORT, FEATURES)
                assert out["version"] == (version if new else "1.0.0") and out["sent"] >= 1, out
                assert out["codes"] == ["workflow-error" if new and kind == "broken" else "ok"] * 6, out
            deadline = time.monotonic() + 60
            while (halted := registry.history("digits")[0])["halted_at"] is None:
                assert time.monotonic() < deadline, f"{version} was not halted: {registry.history('digits')[:2]}"
                time.sleep(0.2)
            assert halted["version"] == version and halted["halt_reason"].startswith(reason), halted
            assert registry.resolve_version("digits", "stable", ids[0]) == "1.0.0"
            for page in pages:  # the devices on it go back at their next check-in
                wait_version(page, "1.0.0")
                assert page.evaluate(ANSWER, "fleet") == {"ok": True, "version": "1.0.0", "right": True}


def test_a_restarted_service_worker_checks_in_at_its_first_request(context, fleet_server, v2, tmp_path):
    """The page asks only every 10 minutes here: what finds the new release is the service worker's own start."""
    page = boot(context, fleet_server, "fleet-start", updates="now", checkIntervalMs=600_000)
    page.wait_for_function("fleetEvents.some((e) => e.type === 'checkin')", timeout=30_000)
    Registry(fleet_server.data).publish(renumbered(v2, tmp_path, "1.6.0"), "fleet-start")
    cdp = context.new_cdp_session(page)
    cdp.send("ServiceWorker.enable")
    cdp.send("ServiceWorker.stopAllWorkers")  # as the browser stops an idle one
    page.evaluate("fetch('/style.css').then((r) => r.ok)")  # its next request starts it again
    wait_version(page, "1.6.0")
    assert [(e["from"], e["to"]) for e in events(page, "updatestaged")] == [("1.0.0", "1.6.0")]
