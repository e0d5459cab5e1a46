"""WebGPU on SwiftShader vs WASM in headless Chromium: one model call each way, and how far apart.

    .venv/bin/python bench/webgpu.py --site dist            # a site `waystation build` made
    .venv/bin/python bench/webgpu.py --site dist --calls 10 --skip-minilm

Copies the site (hard links) into a temporary folder, adds the gpu-mlp bundle
(tests/e2e/gpu_mlp.py: a 64 -> 128 -> 10 MLP that offers WebGPU), serves it with the real server
(tests/server_process.py) and opens each bundle in Chromium launched with WebGPU
(--enable-unsafe-webgpu, no --disable-gpu: SwiftShader's software adapter here), once with
open({webgpu: "never"}) and once with "force". Prints the open time, the first call (WebGPU
compiles its shaders there), the median of --calls later calls, and the largest difference
between the two runs' outputs. gpu-mlp gets 64 rows; MiniLM (int8, as the site ships it)
`embed` gets two sentences.

Measured on the 2-core machine shared with other work (so, noisy), 2026-12-03:

    gpu-mlp  never  ['wasm'] open 3236 ms, first call 426 ms, median of 20 28.8 ms
    gpu-mlp  force  ['webgpu', 'wasm'] open 5793 ms, first call 7499 ms, median of 20 89.2 ms
    gpu-mlp  max |webgpu - wasm| = 1.19e-07
    minilm   never  ['wasm'] open 4406 ms, first call 1936 ms, median of 10 166.8 ms
    minilm   force  ['webgpu', 'wasm'] open 7925 ms, first call 16399 ms, median of 10 1672.3 ms
    minilm   max |webgpu - wasm| = 1.20e-03

A CPU-emulated GPU is 3-10x slower than WASM per call and costs seconds of shader compilation
first, which is why web/execution.js picks WASM on a software adapter unless forced.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from playwright.sync_api import sync_playwright  # noqa: E402

from waystation.bundles.builder import build_bundle  # noqa: E402
from waystation.bundles.signing import dev_key  # noqa: E402

from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from e2e.gpu_mlp import write_source  # noqa: E402
from server_process import Server  # noqa: E402

WEBGPU_ARGS = [*(a for a in CHROMIUM_ARGS if a != "--disable-gpu"), "--enable-unsafe-webgpu"]
OPEN_AND_TIME = """async ([bundle, webgpu, name, args, calls]) => {
  const { open } = await import("/waystation.js");
  let started = performance.now();
  const app = await open({ bundle, webgpu, serviceWorker: false });
  const openMs = performance.now() - started;
  try {
    started = performance.now();
    let value = await app.call(name, args);
    const firstMs = performance.now() - started;
    const times = [];
    for (let i = 0; i < calls; i++) {
      started = performance.now();
      value = await app.call(name, args);
      times.push(performance.now() - started);
    }
    const tensor = value.data ? value : value.embeddings;
    return { providers: app.info.executionProviders, openMs, firstMs, times, data: Array.from(tensor.data) };
  } finally {
    app.close();
  }
}"""
ROWS = [[((i * 7 + j * 3) % 11) / 5 - 1 for j in range(64)] for i in range(64)]
TEXTS = ["the quick brown fox jumps over the lazy dog", "offline first inference in the browser"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, required=True, help="a built site (waystation build --out DIR)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls after the first (default 20)")
    parser.add_argument("--skip-minilm", action="store_true", help="gpu-mlp only (MiniLM's first WebGPU call takes 15-40 s)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "dist"
        shutil.copytree(options.site, site, copy_function=os.link)
        build_bundle(write_source(Path(tmp) / "gpu-mlp"), site / "bundles", lambda _m: None,
                     key=dev_key(), chunk_store=site / "chunks")
        (Path(tmp) / "data").mkdir()
        server = Server(site, Path(tmp) / "data").start()
        try:
            cases = [("gpu-mlp", "probabilities", {"rows": ROWS}, options.calls)]
            if not options.skip_minilm:
                cases.append(("minilm", "embed", {"texts": TEXTS}, max(1, options.calls // 2)))
            run(server.url, cases)
        finally:
            server.stop()


def run(url: str, cases: list[tuple[str, str, dict, int]]) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=WEBGPU_ARGS)
        page = browser.new_page()
        page.goto(f"{url}/boot.json")
        for bundle, function, args, calls in cases:
            results = {mode: page.evaluate(OPEN_AND_TIME, [bundle, mode, function, args, calls]) for mode in ("never", "force")}
            for mode, r in results.items():
                print(f"{bundle:8} {mode:6} {r['providers']} open {r['openMs']:.0f} ms, first call {r['firstMs']:.0f} ms, "
                      f"median of {calls} {statistics.median(r['times']):.1f} ms")
            apart = max(abs(a - b) for a, b in zip(results["never"]["data"], results["force"]["data"], strict=True))
            print(f"{bundle:8} max |webgpu - wasm| = {apart:.2e}")
        browser.close()


if __name__ == "__main__":
    main()
