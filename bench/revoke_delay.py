"""Revoke delay: from `registry.revoke()` (what `waystation bundle revoke` runs) to a device that
checks in answering its next call with the previous version.

A real `waystation serve` on 127.0.0.1 and headless Chromium: the demo page plus an App with
background updates ("now") checking in every --interval-ms. Each round publishes a new version
(1.0.1's files renumbered), waits until the device runs it, revokes it, and times until a call
answers with 1.0.0. The delay is the wait for the next check-in (about half the interval on
average, at most all of it) plus the check-in's own work: the status request, the store leaving
the version, the worker reopening the previous one, and the call.

    .venv/bin/python bench/revoke_delay.py [--rounds 7] [--interval-ms 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from waystation.bundles.builder import manifest_text  # noqa: E402
from waystation.bundles.signing import dev_key, sign_manifest  # noqa: E402
from waystation.server.registry import Registry  # noqa: E402
from waystation.site import build_site  # noqa: E402

from conftest import Server  # noqa: E402  (the same real server the tests use)
from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from e2e.test_bundle_updates import make_v2  # noqa: E402

OPEN = """async (intervalMs) => {
  const { open } = await import("/waystation.js");
  window.fleet = await open({ bundle: "digits", channel: "bench", updates: "now", checkIntervalMs: intervalMs });
  window.marks = {};
  fleet.addEventListener("checkin", () => { marks.checkin = Date.now(); });
  fleet.addEventListener("revoked", async () => {
    marks.revoked = Date.now();
    await fleet.call("samples");
    marks.answered = { at: Date.now(), version: fleet.version };
  });
  return fleet.version;
}"""


def renumbered(v2: Path, tmp: Path, version: str) -> Path:
    folder = shutil.copytree(v2, tmp / "digits" / version)
    data = json.loads((folder / "manifest.json").read_text())
    data.update(version=version, parent="1.0.0")
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(data, dev_key())))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--interval-ms", type=int, default=2000, help="the device's check-in interval")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="waystation-bench-"))
    site = work / "dist"
    build_site(ROOT, site, progress=lambda _m: None)
    v2 = make_v2(work)
    server = Server(site, work / "data").start()
    registry = Registry(server.data)
    delays, after_checkin = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{server.url}/digits.html?channel=bench")
            page.wait_for_selector("#status[data-state=ready]", timeout=120_000)
            assert page.evaluate(OPEN, args.interval_ms) == "1.0.0"
            for i in range(args.rounds):
                version = f"1.1.{i}"
                registry.publish(renumbered(v2, work, version), "bench")
                page.wait_for_function(f"fleet.version === '{version}'", timeout=120_000)
                page.evaluate("() => { window.marks = {}; }")
                # Phases spread over the interval: a revoke meets a device anywhere in its wait.
                time.sleep((i % args.rounds) / args.rounds * args.interval_ms / 1000)
                revoked_at = time.time() * 1000
                registry.revoke("digits", version, reason="bench")
                page.wait_for_function("Boolean(window.marks.answered)", timeout=120_000)
                marks = page.evaluate("window.marks")
                assert marks["answered"]["version"] == "1.0.0", marks
                delays.append(marks["answered"]["at"] - revoked_at)
                after_checkin.append(marks["answered"]["at"] - marks["checkin"])
                print(f"round {i + 1}: {version} revoked -> 1.0.0 answering after {delays[-1]:.0f} ms "
                      f"({after_checkin[-1]:.0f} ms of it after the page heard the check-in)", file=sys.stderr)
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"revoke delay, headless Chromium, digits, check-in every {args.interval_ms} ms, {args.rounds} rounds")
    print(f"revoke -> previous version answering: median {statistics.median(delays):.0f} ms, "
          f"min {min(delays):.0f}, max {max(delays):.0f}")
    print(f"of which after the page heard the check-in (reopen the previous version in the worker, the call): "
          f"median {statistics.median(after_checkin):.0f} ms, max {max(after_checkin):.0f}")
    print(json.dumps({"intervalMs": args.interval_ms, "delaysMs": [round(d) for d in delays],
                      "afterCheckinMs": [round(d) for d in after_checkin]}))


if __name__ == "__main__":
    main()
