"""Telemetry's per-call cost: a warm digits call with telemetry on against the same call with it off.

    .venv/bin/python bench/telemetry.py [--runs 200] [--rounds 5]

One page holds two apps of digits, one opened with `telemetry: true` and one without, each in
its own worker; rounds alternate between them (which goes first alternates too), each round
`runs` batch-1 classify_features calls, as bench/speed.py measures the per-call constant. Prints
each side's median call, the difference and the ratio; then the page-side cost of recording one
call alone (web/telemetry.js's aggregation and alerts, digits' declared signal included), timed
over many calls, as a share of the per-call glue cost (a call's time beyond its model run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from playwright.sync_api import sync_playwright  # noqa: E402

from waystation.site import build_site  # noqa: E402

from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from server_process import Server  # noqa: E402

PROBE = "/telemetry-bench.html"
# Cross-origin isolated, as the site's pages are: performance.now() then has microseconds, not 0.1 ms.
ISOLATED = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
MEASURE = """async ({ runs, rounds }) => {
  const { open } = await import("/waystation.js");
  const off = await open({ bundle: "digits" });
  const on = await open({ bundle: "digits", telemetry: true });
  const [sample] = await off.call("samples", {});
  const args = { features: [sample.pixels] };
  const apps = { off, on };
  for (const app of [off, on]) for (let i = 0; i < 50; i++) await app.call("classify_features", args);  // warm
  const times = { off: [], on: [] };
  const glue = [];
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 ? ["on", "off"] : ["off", "on"]) {
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        await apps[side].call("classify_features", args);
        times[side].push(performance.now() - t);
        if (side === "off") glue.push(apps.off.lastCall.ms - apps.off.lastCall.metrics.model_ms);
      }
    }
  }
  const [report] = await on.telemetry.pending();
  off.close();
  on.close();
  const section = report.bundles[0];
  return { times, glue, isolated: crossOriginIsolated, calls: section.functions.classify_features.calls, models: section.models };
}"""
RECORD = """async ({ calls }) => {
  // The page's side alone: what App.call adds per call with telemetry on (aggregation + alerts).
  const { AppTelemetry, TelemetryAggregator } = await import("/telemetry.js");
  const info = (await (await fetch("/bundles/digits/1.0.0/manifest.json")).json());
  const t = new AppTelemetry({ enabled: false, bundle: "digits", baseUrl: location.origin + "/",
    request: async () => ({}), emit: () => {} });
  // An aggregator without the sender's timers and IndexedDB: the per-call path only.
  t.aggregator = new TelemetryAggregator();
  t.sender = { touched() {} };
  t.opened({ version: "1.0.0", telemetry: info.telemetry, timings: {}, startupMs: 1 });
  const record = (i) => t.call({ name: "classify_features", ms: 1 + (i % 50) / 10, error: null,
    metrics: { top_score: (i % 100) / 100, model_ms: 0.3 }, ranOn: "device", runs: [["classifier", 0.3]] }, "1.0.0");
  for (let i = 0; i < 10000; i++) record(i);  // warm (JIT)
  const per = [];
  for (let round = 0; round < 5; round++) {
    const start = performance.now();
    for (let i = 0; i < calls; i++) record(i);
    per.push((performance.now() - start) / calls);
  }
  return per;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per side per round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waystation-telemetry-bench-"))
    build_site(ROOT, work / "dist", progress=lambda _m: None)
    server = Server(work / "dist", work / "data").start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            context.route(server.url + PROBE, lambda route: route.fulfill(
                content_type="text/html", body="<!doctype html><title>bench</title>", headers=ISOLATED))
            page = context.new_page()
            page.set_default_timeout(300_000)
            page.goto(server.url + PROBE)
            calls = page.evaluate(MEASURE, {"runs": args.runs, "rounds": args.rounds})
            record = page.evaluate(RECORD, {"calls": 100_000})
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    off, on = statistics.median(calls["times"]["off"]), statistics.median(calls["times"]["on"])
    glue = statistics.median(calls["glue"])
    per_call_us = statistics.median(record) * 1000
    print(f"telemetry per-call cost, headless Chromium, warm digits batch-1 classify_features, "
          f"{args.rounds} interleaved rounds x {args.runs} calls per side")
    print(f"  median call: telemetry off {off:.3f} ms, on {on:.3f} ms: difference {on - off:+.3f} ms, ratio {on / off:.3f}")
    mean_off, mean_on = statistics.fmean(calls["times"]["off"]), statistics.fmean(calls["times"]["on"])
    print(f"  mean call:   telemetry off {mean_off:.3f} ms, on {mean_on:.3f} ms: difference {mean_on - mean_off:+.3f} ms, "
          f"ratio {mean_on / mean_off:.3f}")
    print(f"  cross-origin isolated: {calls['isolated']}")
    print(f"  glue per call (call minus model run, off side): {glue:.3f} ms")
    print(f"  page-side recording alone: {per_call_us:.2f} us per call = {per_call_us / 1000 / glue:.2%} of the glue "
          f"(rounds: {', '.join(f'{x * 1000:.2f}' for x in record)} us)")
    print(f"  the report counted {calls['calls']} calls of the 'on' app; models: {json.dumps(calls['models'])[:200]}")


if __name__ == "__main__":
    main()
