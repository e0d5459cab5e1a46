"""Start fast, call fast: Waystation against transformers.js and raw onnxruntime-web, one run.

    .venv/bin/python bench/speed.py [--visits 3] [--runs 30] [--rounds 3] [--rows 100000]

Prints, each with its ratio and where its time goes:
  - returning visit, offline: import + open() to the first MiniLM embedding (Waystation, from the
    service worker's store) against transformers.js's import + pipeline + first embedding and a
    raw onnxruntime-web session from the same model file (both online with a warm HTTP cache:
    neither works offline without an app of its own around it);
  - first visit, online (fresh profile, downloads included), Waystation against transformers.js;
  - warm MiniLM int8 batch-1 calls: Waystation against ORT in a worker (one postMessage round
    trip: the fair peer) and transformers.js on the page;
  - warm digits batch-1 calls against ORT in a worker: the per-call constant;
  - 100,000 rows of 4 floats through a classifier, in the browser against the same function on
    CPython;
  - memory (PSS of the renderer: page + worker) with MiniLM loaded, against transformers.js.
Every start-up path runs in a fresh page (its own browser for first visits and memory).
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "models" / "minilm")]

from playwright.sync_api import BrowserContext, sync_playwright  # noqa: E402

from waystation.bundles.builder import build_bundle  # noqa: E402
from waystation.bundles.signing import dev_key  # noqa: E402

from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from minilm_latency import SENTENCES, pre_tokenised, site_with_bench  # noqa: E402
from server_process import Server  # noqa: E402

TEXT = SENTENCES[0]
PARTS = ["startup", "warm", "digits", "rows"]


def build(work: Path) -> Path:
    """The site with the bench pages, transformers.js, and the bulk-rows bundle."""
    site = site_with_bench(work)
    build_bundle(ROOT / "bench" / "bundles" / "rows", site / "bundles", lambda _m: None,
                 key=dev_key(), chunk_store=site / "chunks")
    boot = json.loads((site / "boot.json").read_text())
    boot["bundles"]["rows"] = "1.0.0"
    (site / "boot.json").write_text(json.dumps(boot, indent=2))
    return site


def renderer_pss_mb(profile: Path) -> float:
    """PSS of the renderer processes of the Chromium whose profile is `profile`: the page, its
    workers and its service worker (each carries --user-data-dir; PSS shares libraries fairly)."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        try:
            # Chromium rewrites its command line as one string (spaces, not NULs): match substrings.
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ") + b" " if entry.name.isdigit() else b""
            if b"--type=renderer " in cmd and f"--user-data-dir={profile} ".encode() in cmd and b"--top-chrome-webui" not in cmd:
                for line in (entry / "smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total_kb += int(line.split()[1])
        except OSError:
            pass  # a process that ended meanwhile
    return total_kb / 1024


class Bench:
    def __init__(self, p, server: Server, tokens: dict) -> None:
        self.p = p
        self.url = server.url + "/bench/speed.html"
        self.tokens = tokens

    def fresh(self, profile: Path) -> BrowserContext:
        return self.p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def page(self, context: BrowserContext):
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and print("console:", m.text[:300], file=sys.stderr))
        page.goto(self.url)
        page.wait_for_function("document.title === 'ready'")
        return page

    def startup(self, page, path: str) -> dict:
        return page.evaluate("o => window.startup(o)", {"path": path, "text": TEXT, "tokens": self.tokens})

    def visits(self, work: Path, path: str, n: int) -> dict:
        """First visit in a fresh profile, then `n` returning visits (Waystation's offline)."""
        profile = Path(tempfile.mkdtemp(dir=work))
        context = self.fresh(profile)
        try:
            page = self.page(context)
            first = self.startup(page, path)
            memory = renderer_pss_mb(profile)
            page.close()
            returning, infos = [], []
            for _ in range(n):
                page = self.page(context)
                if path == "waystation":
                    context.set_offline(True)
                result = self.startup(page, path)
                returning.append(result["ms"])
                infos.append(result.get("info"))
                context.set_offline(False)
                page.close()
            return {"first": first["ms"], "firstInfo": first.get("info"), "returning": returning, "infos": infos,
                    "memoryMb": memory}
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def cpython_rows(site: Path, rows: int, runs: int) -> float:
    """The same `classify` on CPython (native host), rows arriving as JSON as `waystation run` gives them."""
    import asyncio

    from waystation.device.runtime import App

    data = [[((i * 4 + j) * 7919 % 97) / 13 for j in range(4)] for i in range(rows)]
    text = json.dumps({"rows": data})

    async def go() -> list[float]:
        app = await App.open(site / "bundles" / "rows" / "1.0.0")
        out = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            await app.call("classify", json.loads(text))
            out.append((time.perf_counter() - t) * 1000)
        return out[1:]

    return statistics.median(asyncio.run(go()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=3, help="returning visits per path")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", choices=PARTS, default=PARTS, help="run these parts only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waystation-speed-"))
    site = build(work)
    server = Server(site, work / "data").start()
    report: dict = {}
    try:
        with sync_playwright() as p:
            bench = Bench(p, server, pre_tokenised([TEXT]))
            if "startup" in args.only:
                for path in ("waystation", "transformersjs", "raw"):
                    report[path] = bench.visits(work, path, args.visits)
            profile = Path(tempfile.mkdtemp(dir=work))
            context = bench.fresh(profile)
            page = bench.page(context)
            bench.startup(page, "waystation")  # the service worker and its store, for what follows
            page.close()
            calls = {
                "warm": {"text": TEXT, "tokens": bench.tokens, "runs": args.runs, "rounds": args.rounds, "warmupMs": 3000},
                "digits": {"runs": args.runs * 10, "rounds": args.rounds, "warmupMs": 2000},
                "rows": {"rows": args.rows, "runs": 5},
            }
            for part, options in calls.items():
                if part in args.only:
                    page = bench.page(context)
                    report[part] = page.evaluate(f"o => window.{part}(o)", options)
                    page.close()
            context.close()
    finally:
        server.stop()
    if "rows" in args.only:
        report["cpythonRowsMs"] = cpython_rows(site, args.rows, 5)
    shutil.rmtree(work, ignore_errors=True)
    print_report(report, args)


def print_report(r: dict, args: argparse.Namespace) -> None:
    print(f"headless Chromium, 1 ORT thread; medians; {args.visits} returning visits per path")
    if "waystation" in r:
        print_startup(r, args)
    if "warm" in r:
        print_warm(r)
    if "digits" in r:
        print_digits(r)
    if "rows" in r:
        print_rows(r)


def print_startup(r: dict, args: argparse.Namespace) -> None:
    med = statistics.median
    w, t, raw = r["waystation"], r["transformersjs"], r["raw"]
    print(f"returning visit, open() to first MiniLM embedding: waystation (offline) {med(w['returning']):.0f} ms, "
          f"transformers.js {med(t['returning']):.0f} ms, raw ORT {med(raw['returning']):.0f} ms: "
          f"{med(w['returning']) / med(t['returning']):.2f}x tjs, {med(w['returning']) / med(raw['returning']):.2f}x raw ORT")
    timings = [i["timings"] for i in w["infos"] if i]
    if timings:
        keys = ("runtimeMs", "packagesMs", "bundleMs", "modelsMs", "pythonReadyAt", "bundleReadyAt")
        print("  waystation's parts (medians):", ", ".join(f"{k} {med([x.get(k) or 0 for x in timings]):.0f}" for k in keys),
              f"snapshot {timings[0].get('snapshot')}")
        model = [next(iter(x.get("models", {}).values()), {}) for x in timings]
        print("  the model file, ms since the worker started:",
              ", ".join(f"{k} {med([m.get(k) or 0 for m in model]):.0f}" for k in ("fetchedAt", "verifiedAt", "sessionAt")))
    first = (w.get("firstInfo") or {}).get("timings", {})
    if first:
        print("  first visit's parts:", ", ".join(f"{k} {first.get(k) or 0:.0f}" for k in ("runtimeMs", "bundleMs", "modelsMs")),
              "model", {k: round(v) for k, v in next(iter(first.get("models", {}).values()), {}).items()},
              "page", {k: round(v) if isinstance(v, float) else v for k, v in w["firstInfo"].get("openTimings", {}).items()})
    print(f"first visit, online, to first embedding: waystation {w['first']:.0f} ms, transformers.js {t['first']:.0f} ms "
          f"({w['first'] / t['first']:.2f}x), raw ORT {raw['first']:.0f} ms")
    print(f"memory with MiniLM loaded (renderer PSS, page + worker + service worker): waystation {w['memoryMb']:.0f} MB, "
          f"transformers.js {t['memoryMb']:.0f} MB ({w['memoryMb'] / t['memoryMb']:.2f}x), "
          f"raw ORT worker {raw['memoryMb']:.0f} MB")


def print_warm(r: dict) -> None:
    m = r["warm"]["medianMs"]
    print(f"warm MiniLM batch 1: waystation {m['waystation']:.2f} ms, ORT in a worker {m['ortWorker']:.2f} ms "
          f"({m['waystation'] / m['ortWorker']:.2f}x), "
          f"transformers.js {m['transformersjs']:.2f} ms ({m['waystation'] / m['transformersjs']:.2f}x)")
    print("  waystation's parts:", ", ".join(f"{k} {v:.2f}" for k, v in r["warm"]["parts"].items()))
    print("  per round:", json.dumps(r["warm"]["rounds"]))


def print_digits(r: dict) -> None:
    d = r["digits"]["medianMs"]
    print(f"warm digits batch 1: waystation tensor out {d['waystationTensor']:.3f} ms, JSON out with post-processing "
          f"{d['waystationJson']:.3f} ms, ORT in a worker {d['ortWorker']:.3f} ms: constant "
          f"{d['waystationTensor'] - d['ortWorker']:.3f} ms ({d['waystationTensor'] / d['ortWorker']:.1f}x)")
    print("  waystation's parts:", ", ".join(f"{k} {v:.3f}" for k, v in r["digits"]["parts"].items()))


def print_rows(r: dict) -> None:
    rows = r["rows"]
    print(f"{rows['rows']:,} rows of 4 floats: browser {rows['typedMs']:.0f} ms as a typed array, {rows['nestedMs']:.0f} ms as "
          f"nested lists; CPython {r['cpythonRowsMs']:.0f} ms: {rows['typedMs'] / r['cpythonRowsMs']:.2f}x and "
          f"{rows['nestedMs'] / r['cpythonRowsMs']:.2f}x")
    parts = rows["parts"]
    print(f"  typed array parts: page {parts['ms']:.0f} ms, worker {parts['workerMs']:.0f} ms, python {parts['pythonMs']:.0f} ms")


if __name__ == "__main__":
    main()
