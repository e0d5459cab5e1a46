"""Delta updates of a bundle in a real browser against the real server: install, update, activate,
roll back, offline, garbage collection, and every fault an update can meet (corrupt or tampered
data, untrusted keys, cut and stalled networks, server errors, a full quota, a failing smoke check).

The server runs on a fresh --data registry: the site's digits 1.0.0 on channel "stable" (published
by `waystation serve` on start), 1.0.1 on "beta" (a new workflow function and a new data file),
1.0.2 on "broken" (1.0.1 with a sample input its model does not take, so its smoke check fails).
Each test opens the demo page in a fresh browser context: a device with nothing stored.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import BrowserContext, Page, Route

from waystation.bundles.builder import build_bundle, manifest_text
from waystation.bundles.signing import dev_key, sign_manifest
from waystation.server.registry import Registry

from .conftest import wait_ready

ROOT = Path(__file__).resolve().parents[2]

UPDATE = """async (options) => {
  const events = [];
  try {
    const result = await app.update({ ...options, onProgress: (p) => events.push(p) });
    return { ok: true, result, events, version: app.version };
  } catch (e) {
    return { ok: false, name: e.name, message: e.message, events, version: app.version };
  }
}"""
ANSWER = """async () => {
  const sample = (await app.call("samples"))[0];
  const [answer] = await app.call("classify_features", { features: [sample.pixels] });
  return { version: app.version, digit: answer.digit, label: sample.label };
}"""


@dataclass(frozen=True)
class Version:
    version: str
    folder: Path
    manifest: dict

    @property
    def chunks(self) -> dict[str, int]:
        return {sha: size for f in self.manifest["files"] for sha, size in f["chunks"]}


@dataclass(frozen=True)
class Releases:
    server: Any  # tests/conftest.py's Server
    v1: Version
    v2: Version
    broken: Version

    @property
    def new_in_v2(self) -> dict[str, int]:
        return {sha: size for sha, size in self.v2.chunks.items() if sha not in self.v1.chunks}


def load(folder: Path) -> Version:
    manifest = json.loads((folder / "manifest.json").read_text())
    return Version(manifest["version"], folder, manifest)


def make_v2(tmp: Path) -> Path:
    """digits 1.0.1: the site's source plus a workflow function and a 1 MiB data file (some 16 chunks)."""
    source = shutil.copytree(ROOT / "models" / "digits", tmp / "source", ignore=shutil.ignore_patterns("__pycache__"))
    config = (source / "bundle.toml").read_text()
    assert tomllib.loads(config)["version"] == "1.0.0"
    config = config.replace('version = "1.0.0"', 'version = "1.0.1"\nparent = "1.0.0"')
    (source / "bundle.toml").write_text(config.replace('files = ["samples.json"]', 'files = ["samples.json", "calibration.bin"]'))
    (source / "calibration.bin").write_bytes(random.Random(4).randbytes(1024 * 1024))
    with (source / "workflow.py").open("a") as f:
        f.write('\n\n@export\ndef release_notes(ctx) -> str:\n    return "1.0.1: calibration data"\n')
    return build_bundle(source, tmp / "built", progress=lambda _m: None, key=dev_key(), chunk_store=tmp / "built" / "chunks")


def make_broken(v2: Path, tmp: Path) -> Path:
    """digits 1.0.2: 1.0.1's files, and a smoke-check sample of 63 pixels where the model takes 64."""
    folder = shutil.copytree(v2, tmp / "digits" / "1.0.2")
    data = json.loads((folder / "manifest.json").read_text())
    data.update(version="1.0.2", parent="1.0.1")
    data["models"]["classifier"]["sample"] = {"pixels": {"dtype": "float32", "shape": [1, 63], "fill": 0}}
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(data, dev_key())))
    return folder


@pytest.fixture(scope="module")
def releases(site_dir: Path, tmp_path_factory: pytest.TempPathFactory, start_server) -> Iterator[Releases]:
    tmp = tmp_path_factory.mktemp("releases")
    v2 = make_v2(tmp)
    broken = make_broken(v2, tmp)
    server = start_server()  # a fresh registry: `waystation serve` publishes the site's 1.0.0 on stable
    registry = Registry(server.data)
    registry.publish(v2, "beta")
    registry.publish(broken, "broken")
    yield Releases(server, load(site_dir / "bundles" / "digits" / "1.0.0"), load(v2), load(broken))
    server.stop()


def boot(context: BrowserContext, releases: Releases, query: str = "") -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{releases.server.url}/digits.html{query}")
    wait_ready(page)
    assert not errors, errors
    return page


def assert_answers_with(page: Page, version: str) -> None:
    answer = page.evaluate(ANSWER)
    assert answer["version"] == version
    assert answer["digit"] == answer["label"]


def held(page: Page) -> dict:
    return page.evaluate("app.versions()")


def update(page: Page, **options) -> dict:
    return page.evaluate(UPDATE, options)


def assert_failed_and_still_on_v1(out: dict, code: str, *phrases: str) -> None:
    assert not out["ok"], out
    assert out["name"] == code, out
    for phrase in phrases:
        assert phrase in out["message"], out["message"]
    assert out["message"].endswith("digits 1.0.0 stays active") or "digits 1.0.0 stays active; " in out["message"], out["message"]


def test_first_install_fetches_every_chunk_once_and_an_update_only_the_missing_ones(context, releases, chunk_requests):
    page = boot(context, releases)
    assert sorted(chunk_requests) == sorted(releases.v1.chunks)
    chunk_requests.clear()
    check = page.evaluate("app.checkForUpdate({ channel: 'beta' })")
    assert (check["from"], check["to"], check["upToDate"]) == ("1.0.0", "1.0.1", False)
    assert check["fetchBytes"] == sum(releases.new_in_v2.values()) and chunk_requests == []

    out = update(page, channel="beta")
    assert out["ok"], out
    new = releases.new_in_v2
    assert sorted(chunk_requests) == sorted(new)
    result = out["result"]
    assert (result["from"], result["to"], result["activated"]) == ("1.0.0", "1.0.1", "now")
    total = sum(releases.v2.chunks.values())
    fetched = sum(new.values())
    assert (result["fetchedBytes"], result["totalBytes"], result["savedBytes"]) == (fetched, total, total - fetched)

    stages = [e["stage"] for e in out["events"]]
    assert stages[0] == "available" and stages[-1] == "activated" and "smoke-check" in stages
    downloads = [e for e in out["events"] if e["stage"] == "download"]
    assert len(downloads) == len(new)
    assert [e["loaded"] for e in downloads] == sorted(e["loaded"] for e in downloads)
    assert downloads[-1]["loaded"] == downloads[-1]["total"] == result["fetchedBytes"]

    assert_answers_with(page, "1.0.1")
    assert page.evaluate("app.call('release_notes')") == "1.0.1: calibration data"
    versions = held(page)
    assert (versions["active"], versions["previous"], versions["staged"]) == ("1.0.1", "1.0.0", None)
    again = update(page, channel="beta")
    assert again["ok"] and again["result"]["upToDate"] and again["result"]["activated"] is None, again

    context.set_offline(True)  # the next boot reads 1.0.1 from IndexedDB alone
    page.reload()
    wait_ready(page)
    assert_answers_with(page, "1.0.1")
    assert page.evaluate("app.call('release_notes')") == "1.0.1: calibration data"


def test_activation_on_next_load_then_rollback_deletes_what_no_version_uses(context, releases):
    page = boot(context, releases)
    out = update(page, channel="beta", activate="next-load")
    assert out["ok"] and out["result"]["activated"] == "next-load", out
    assert_answers_with(page, "1.0.0")
    versions = held(page)
    assert (versions["active"], versions["staged"]) == ("1.0.0", "1.0.1")
    assert {v["version"]: v["state"] for v in versions["versions"]} == {"1.0.0": "installed", "1.0.1": "ready"}

    page.reload()
    wait_ready(page)
    assert_answers_with(page, "1.0.1")
    versions = held(page)
    assert (versions["active"], versions["previous"]) == ("1.0.1", "1.0.0")
    assert set(versions["storedChunks"]) == set(releases.v1.chunks) | set(releases.v2.chunks)

    moved = page.evaluate("app.rollback()")
    assert (moved["from"], moved["to"]) == ("1.0.1", "1.0.0")
    assert_answers_with(page, "1.0.0")
    versions = held(page)
    assert (versions["active"], versions["previous"], versions["staged"]) == ("1.0.0", None, None)
    assert sorted(versions["storedChunks"]) == sorted(releases.v1.chunks)  # 1.0.1's own chunks are gone
    assert page.evaluate("app.rollback().catch((e) => e.name)") == "no-previous-version"


def test_the_demo_page_shows_an_update_arriving_with_its_progress_and_savings(context, releases):
    page = boot(context, releases, "?channel=beta")
    assert "digits 1.0.0 · channel beta" in page.text_content("#version")
    page.evaluate("""() => {
      window.statusSeen = [];
      new MutationObserver(() => statusSeen.push(document.querySelector('#update-status').textContent))
        .observe(document.querySelector('#update-status'), { childList: true, characterData: true, subtree: true });
    }""")
    page.click("#update")
    page.wait_for_selector("#update-status[data-state=done]", timeout=60_000)
    new, total = sum(releases.new_in_v2.values()), sum(releases.v2.chunks.values())
    kib = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    assert page.text_content("#update-status") == (
        f"Updated 1.0.0 → 1.0.1: fetched {kib(new)} of {kib(total)}, saved {kib(total - new)} "
        f"({round(100 * (total - new) / total)}%)")
    seen = page.evaluate("statusSeen")
    assert any(s.startswith("1.0.1 available") for s in seen) and any(s.startswith("fetching") for s in seen), seen
    assert "digits 1.0.1" in page.text_content("#status")
    page.wait_for_selector("#rollback:not([disabled])")
    assert "previous 1.0.0 kept for rollback" in page.text_content("#version")


def test_without_the_service_worker_the_site_build_opens_and_updates_are_refused(context, releases, chunk_requests):
    page = boot(context, releases)
    chunk_requests.clear()
    out = page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      const app = await open({ bundle: "digits", serviceWorker: false });
      try {
        const [answer] = await app.call("classify_features", { features: [(await app.call("samples"))[0].pixels] });
        const refused = await app.update().catch((e) => ({ name: e.name, message: e.message }));
        return { version: app.version, digit: answer.digit, refused };
      } finally {
        app.close();
      }
    }""")
    assert (out["version"], out["digit"]) == ("1.0.0", 0)
    assert out["refused"]["name"] == "unsupported"
    assert "update() needs the service worker's bundle store" in out["refused"]["message"]
    assert chunk_requests == []  # the site's own build: files, not chunks


# Faults. In every case the app keeps answering with the version it had, and the error says what happened.

def test_a_corrupted_chunk_is_refused(context, releases, chunk_requests):
    page = boot(context, releases)
    target = next(iter(releases.new_in_v2))

    def corrupt(route: Route) -> None:
        body = bytearray(route.fetch().body())
        body[len(body) // 2] ^= 0xFF
        route.fulfill(status=200, body=bytes(body), headers={"Content-Type": "application/octet-stream"})

    context.route(f"**/chunks/{target}", corrupt)
    out = update(page, channel="beta", retries=1)
    assert_failed_and_still_on_v1(out, "chunk-corrupt", f"chunk {target[:16]}", "does not match its sha256, 2 times")
    assert chunk_requests.count(target) == 2  # fetched once more before giving up
    assert_answers_with(page, "1.0.0")
    assert held(page)["active"] == "1.0.0"


def tamper_channel(context: BrowserContext, change) -> None:
    def handle(route: Route) -> None:
        manifest = route.fetch().json()
        route.fulfill(status=200, body=json.dumps(change(manifest)), headers={"Content-Type": "application/json"})

    context.route("**/api/bundles/digits/channels/beta?*", handle)


def test_a_tampered_manifest_is_refused_before_any_chunk_is_fetched(context, releases, chunk_requests):
    page = boot(context, releases)
    chunk_requests.clear()
    evil = hashlib.sha256(b"evil").hexdigest()

    def swap_workflow(manifest: dict) -> dict:
        manifest["files"][0].update(sha256=evil, chunks=[[evil, manifest["files"][0]["size"]]])
        return manifest

    tamper_channel(context, swap_workflow)
    out = update(page, channel="beta")
    assert not out["ok"] and out["name"] == "signature-invalid", out
    assert "the manifest was changed after it was signed" in out["message"]
    assert chunk_requests == []
    assert_answers_with(page, "1.0.0")


def test_a_manifest_signed_with_an_untrusted_key_is_refused(context, releases, chunk_requests):
    page = boot(context, releases)
    chunk_requests.clear()
    stranger = Ed25519PrivateKey.generate()
    tamper_channel(context, lambda manifest: sign_manifest(manifest, stranger))
    out = update(page, channel="beta")
    assert not out["ok"] and out["name"] == "signature-invalid", out
    assert "which this app does not trust" in out["message"]
    assert chunk_requests == []
    assert_answers_with(page, "1.0.0")


def test_a_network_cut_mid_update_resumes_with_only_the_missing_chunks(context, releases, chunk_requests):
    page = boot(context, releases)
    served: list[str] = []

    def cut_after_two(route: Route) -> None:
        if len(served) < 2:
            served.append(route.request.url.rsplit("/", 1)[1])
            route.fulfill(response=route.fetch())
        else:
            context.set_offline(True)
            route.abort("internetdisconnected")

    context.route("**/chunks/*", cut_after_two)
    out = update(page, channel="beta", retries=1)
    assert not out["ok"] and out["name"] == "network", out
    n = len(releases.new_in_v2)
    assert f"2 of {n} new chunks are stored, the next try fetches only the other {n - 2}" in out["message"], out["message"]
    assert "1.0.0 stays active" in out["message"]
    assert_answers_with(page, "1.0.0")
    staged = {v["version"]: v for v in held(page)["versions"]}["1.0.1"]
    assert staged["state"] == "fetching"

    context.unroute("**/chunks/*")
    context.set_offline(False)
    chunk_requests.clear()
    out = update(page, channel="beta")
    assert out["ok"], out
    assert sorted(chunk_requests) == sorted(set(releases.new_in_v2) - set(served))
    assert out["result"]["fetchedBytes"] == sum(size for sha, size in releases.new_in_v2.items() if sha not in served)
    assert_answers_with(page, "1.0.1")


def test_a_server_answering_500_is_reported(context, releases):
    page = boot(context, releases)
    context.route("**/chunks/*", lambda route: route.fulfill(status=500, body="boom"))
    out = update(page, channel="beta", retries=1)
    assert_failed_and_still_on_v1(out, "server-error", "the server answered HTTP 500 for /chunks/")
    assert_answers_with(page, "1.0.0")


def test_a_stalled_server_times_out(context, releases):
    page = boot(context, releases)
    stalled: list[Route] = []
    context.route("**/chunks/*", lambda route: stalled.append(route))  # never answered
    out = update(page, channel="beta", timeoutMs=1500, retries=0)
    assert_failed_and_still_on_v1(out, "timeout", "the server stalled", "did not arrive within 1500 ms")
    assert_answers_with(page, "1.0.0")
    for route in stalled:  # the browser gave up on them; let Playwright finish them too
        route.abort()


def test_a_full_quota_is_reported_and_the_version_kept(context, releases):
    # Chrome's estimate() reports usage + 10 GiB whatever it enforces (since 138), and IndexedDB
    # caches its allowance for 30 s: so the quota is pinned before the bundle store first writes,
    # once the service worker has precached the app shell: room for 1.0.0, not for 1.0.1's 1 MiB.
    page = context.new_page()
    page.goto(f"{releases.server.url}/boot.json")
    usage = page.evaluate("""async () => {
      await navigator.serviceWorker.register("/sw.js", { type: "module" });
      await navigator.serviceWorker.ready;
      return (await navigator.storage.estimate()).usage;
    }""")
    cdp = context.new_cdp_session(page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": releases.server.url, "quotaSize": usage + 400 * 1024})
    page.goto(f"{releases.server.url}/digits.html")
    wait_ready(page)
    out = update(page, channel="beta")
    assert_failed_and_still_on_v1(out, "quota-exceeded", "storage is full: the update needs", "the browser refused to store it")
    assert_answers_with(page, "1.0.0")
    assert held(page)["active"] == "1.0.0"


def test_a_version_failing_its_smoke_check_is_not_activated(context, releases):
    page = boot(context, releases)
    out = update(page, channel="broken")
    assert_failed_and_still_on_v1(out, "smoke-check-failed", "digits 1.0.2 failed its smoke check: SmokeCheckError: "
                                  "model 'classifier' does not answer its sample input: model 'classifier' input "
                                  "'pixels' takes shape ['?', 64], got [1, 63]")
    assert_answers_with(page, "1.0.0")
    versions = held(page)
    assert (versions["active"], versions["staged"]) == ("1.0.0", None)
    assert sorted(versions["storedChunks"]) == sorted(releases.v1.chunks)  # what 1.0.2 brought is gone
