"""Glue overhead: a Waystation workflow call vs the same model called directly with onnxruntime-web.

Runs in headless Chromium against `waystation serve` on 127.0.0.1, all paths measured side
by side in one page and one run (alternating rounds), and prints medians and ratios.

    .venv/bin/python bench/glue_latency.py [--runs 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from waystation.site import build_site  # noqa: E402

from conftest import Server  # noqa: E402  (the same real server the tests use)
from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per path per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,64")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="waystation-bench-"))
    site = work / "dist"
    build_site(ROOT, site, progress=lambda _m: None)
    shutil.copytree(ROOT / "bench" / "web", site / "bench")
    server = Server(site, work / "data").start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url + "/bench/")
            page.wait_for_function("document.title === 'ready'")
            results = [page.evaluate("o => window.benchmark(o)", {"batch": int(b), "runs": args.runs, "rounds": args.rounds})
                       for b in args.batches.split(",")]
            # Warm start: the HTTP cache now holds Pyodide, ORT and the bundle; V8 has cached the wasm.
            page.reload()
            page.wait_for_function("document.title === 'ready'")
            warm = page.evaluate("o => window.benchmark(o)", {"batch": 1, "runs": 20, "rounds": 1})
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"glue latency, headless Chromium, digits model, {args.rounds} rounds x {args.runs} calls per path")
    print(f"{'batch':>5} {'waystation ms':>14} {'ORT main ms':>12} {'ORT worker ms':>14} {'in worker':>10} "
          f"{'in python':>10} {'x main':>7} {'x worker':>9}")
    for r in results:
        m = r["medianMs"]
        print(f"{r['batch']:>5} {m['waystation']:>14.3f} {m['ortMainThread']:>12.3f} {m['ortWorker']:>14.3f} "
              f"{r['workerMedianMs']:>10.3f} {r['pythonMedianMs']:>10.3f} {m['waystation'] / m['ortMainThread']:>7.2f} "
              f"{m['waystation'] / m['ortWorker']:>9.2f}")
    print(f"start-up (open() to ready): first load {results[0]['startupMs']:.0f} ms, "
          f"warm cache {warm['startupMs']:.0f} ms (worker-side {warm['workerStartupMs']:.0f} ms); "
          f"cross-origin isolated: {results[0]['crossOriginIsolated']}")
    print("warm start-up breakdown (ms): " + ", ".join(
        f"{k} {v:.0f}" for k, v in warm["timings"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)))
    print(json.dumps({"results": results, "warm": warm}))


if __name__ == "__main__":
    main()
