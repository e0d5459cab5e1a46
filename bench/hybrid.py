"""Hybrid execution: the server's throughput running MiniLM `embed` for pages (POST /api/run),
and the time to a first answer of a fresh visit with `open({fallback: "auto"})` and without.

    .venv/bin/python bench/hybrid.py                                  # concurrency 8, 20 s, RUN_WORKERS 1, 2, 4
    .venv/bin/python bench/hybrid.py --concurrency 8 --seconds 30 --workers 2 --texts 4
    .venv/bin/python bench/hybrid.py --first-visits 5                 # headless Chromium, 5 visits each way

Builds the MiniLM bundle (int8, as the site ships it; the recipe's cached output is reused),
makes `embed` offloadable, publishes it to a fresh --data and starts the real server (a child
process, tests/server_process.py) with WAYSTATION_RUN_WORKERS set to each --workers value. One
signed-in user's --concurrency clients (threads, each with its own HTTP connection) then call
`embed` with --texts sentences back to back for --seconds after one warm-up call each. It prints
calls/s, sentences/s, p50/p99/max latency, refusals (429/503/504 would show as errors), and the
CPU the server used in cores (100% is one core); the clients share the machine's cores.

--first-visits N builds the site, publishes digits and MiniLM made offloadable on channel "hybrid"
and has headless Chromium make N rounds of first visits, each in a fresh context (no service
worker, nothing stored, an empty HTTP cache), alternating within a round: digits with fallback
"auto" and "never" (tests/e2e/test_offload.py's script: open(), `samples`, `classify_features`),
MiniLM with "auto" and "never" (open(), `embed` of one sentence), and transformers.js's import,
pipeline and first MiniLM embedding from the same int8 model file on the same server
(bench/web/speed.js's `startup`, local files only, bench/minilm_latency.py's site). Each row is
the time from calling open() (transformers.js: its import) to it resolving and to the first
answer. The server has each version loaded before the visits (one call), as a running server has.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit"), str(ROOT / "bench"), str(ROOT / "models" / "minilm")]

from waystation.bundles.builder import build_bundle  # noqa: E402
from waystation.server.registry import Registry  # noqa: E402

from offload_bundles import offloadable  # noqa: E402
from server_process import Server  # noqa: E402

SENTENCES = [
    "Offline-first inference keeps working on a train with no signal.",
    "The quick brown fox jumps over the lazy dog.",
    "Sentence embeddings place similar meanings close together.",
    "A service worker keeps the bundle in IndexedDB between visits.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="WAYSTATION_RUN_WORKERS values")
    parser.add_argument("--texts", type=int, default=1, help="sentences per call")
    parser.add_argument("--first-visits", type=int, default=0, metavar="N",
                        help="instead: N fresh visits with fallback auto and N without, in headless Chromium")
    args = parser.parse_args()
    if args.first_visits:
        first_visits(args.first_visits)
        return
    with tempfile.TemporaryDirectory(prefix="waystation-hybrid-") as tmp:
        work = Path(tmp)
        built = build_bundle(ROOT / "models" / "minilm", work / "built", progress=lambda _m: None)
        bundle = offloadable(built, work / "offload")
        site = work / "site"
        site.mkdir()
        (site / "boot.json").write_text("{}")
        (site / "index.html").write_text("<!doctype html>")
        print(f"MiniLM embed via POST /api/run, {args.concurrency} clients, {args.texts} sentence(s) a call, "
              f"{args.seconds:g} s each")
        print("| RUN_WORKERS | calls/s | sentences/s | p50 ms | p99 ms | max ms | errors | server CPU |")
        print("|---|---|---|---|---|---|---|---|")
        print(in_process(bundle, args), flush=True)
        for workers in args.workers:
            data = work / f"data-{workers}"
            Registry(data).publish(bundle, "stable")
            server = Server(site, data, WAYSTATION_RUN_WORKERS=str(workers),
                            WAYSTATION_RUN_PER_USER=str(args.concurrency), WAYSTATION_RUN_QUEUE=str(args.concurrency)).start()
            try:
                print(measure(server, f"minilm/{built.name}/embed", args), flush=True)
            finally:
                server.stop()


def in_process(bundle: Path, args: argparse.Namespace) -> str:
    """The same calls on the native host in this process, one at a time: the work itself, no HTTP."""
    import asyncio

    from waystation.device import App

    async def run() -> str:
        app = await App.open(bundle)
        texts = (SENTENCES * (args.texts // len(SENTENCES) + 1))[: args.texts]
        await app.call("embed", {"texts": texts})
        latencies: list[float] = []
        began = time.perf_counter()
        while time.perf_counter() < began + args.seconds / 2:
            start = time.perf_counter()
            await app.call("embed", {"texts": texts})
            latencies.append((time.perf_counter() - start) * 1000)
        elapsed = time.perf_counter() - began
        app.close()
        ms = sorted(latencies)
        return (f"| in process, 1 caller | {len(ms) / elapsed:.1f} | {len(ms) * args.texts / elapsed:.1f} | "
                f"{statistics.median(ms):.0f} | {ms[min(len(ms) - 1, int(0.99 * len(ms)))]:.0f} | {ms[-1]:.0f} | 0 | |")

    return asyncio.run(run())


def measure(server: Server, path: str, args: argparse.Namespace) -> str:
    account = {"user": "bench", "password": "correct horse battery"}
    token = httpx.post(f"{server.url}/api/sync/register", json=account).json()["token"]
    body = {"args": {"texts": (SENTENCES * (args.texts // len(SENTENCES) + 1))[: args.texts]}}
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{server.url}/api/run/{path}"
    assert httpx.post(url, json=body, headers=headers, timeout=120).status_code == 200  # loads the version once
    latencies: list[float] = []
    errors: list[int] = []
    start_line = threading.Barrier(args.concurrency + 1)
    stop = [0.0]

    def client() -> None:
        with httpx.Client(headers=headers, timeout=60) as http:
            http.post(url, json=body)  # its connection, warm
            start_line.wait()
            while time.perf_counter() < stop[0]:
                began = time.perf_counter()
                status = http.post(url, json=body).status_code
                (latencies if status == 200 else errors).append(time.perf_counter() - began if status == 200 else status)

    threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = _cpu_seconds(server.pid)
    began = time.perf_counter()
    stop[0] = began + args.seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = (_cpu_seconds(server.pid) - cpu_before) / elapsed
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return (f"| {server.env['WAYSTATION_RUN_WORKERS']} | {len(ms) / elapsed:.1f} | {len(ms) * args.texts / elapsed:.1f} | "
            f"{statistics.median(ms):.0f} | {p99:.0f} | {ms[-1]:.0f} | {len(errors)} | {cpu:.0%} |")


MINILM_VISIT = """async ({ account, fallback, text }) => {
  const { open } = await import("/waystation.js");
  const started = performance.now();
  const app = await open({ bundle: "minilm", channel: "hybrid", sync: account, fallback });
  const openedMs = performance.now() - started;
  await app.call("embed", { texts: [text] });
  return { openedMs, firstAnswerMs: performance.now() - started, ranOn: app.lastCall.ranOn };
}"""

VISITS = [("digits", "auto"), ("digits", "never"), ("minilm", "auto"), ("minilm", "never"), ("transformers.js", "")]


def first_visits(count: int) -> None:
    """Time to open() and to the first answer of fresh visits: Waystation with fallback "auto" and
    "never" (digits and MiniLM), and transformers.js's first MiniLM embedding, in one run."""
    from playwright.sync_api import sync_playwright

    from e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from minilm_latency import site_with_bench

    with tempfile.TemporaryDirectory(prefix="waystation-hybrid-") as tmp:
        work = Path(tmp)
        site = site_with_bench(work)  # the site, bench/speed.html, transformers.js and the MiniLM files it reads
        data = work / "data"
        digits = offloadable(site / "bundles" / "digits" / "1.0.0", work / "offload", never=["classify"], version="1.0.1")
        minilm = offloadable(next((site / "bundles" / "minilm").glob("*/manifest.json")).parent, work / "offload",
                             version="1.0.1")
        Registry(data).publish(digits, "hybrid")
        Registry(data).publish(minilm, "hybrid")
        server = Server(site, data).start()
        times: dict[tuple[str, str], list[tuple[float, float]]] = {visit: [] for visit in VISITS}
        try:
            warm_up(server, {"digits/1.0.1/samples": {}, "minilm/1.0.1/embed": {"texts": [SENTENCES[0]]}})
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for i in range(count):
                    for bundle, fallback in VISITS:
                        context = browser.new_context()
                        try:
                            seen = visit(context, server, bundle, fallback, f"visit{i}{bundle[:6]}{fallback}")
                        finally:
                            context.close()
                        times[bundle, fallback].append((seen["openedMs"], seen["firstAnswerMs"]))
                browser.close()
        finally:
            server.stop()
    print(f"First visits (headless Chromium, a fresh context each, {count} rounds, alternating), median of each:")
    print("| what | fallback | open() resolves ms | first answer ms | all first answers ms |")
    print("|---|---|---|---|---|")
    for (bundle, fallback), rows in times.items():
        answers = ", ".join(f"{b:.0f}" for _, b in rows)
        print(f"| {bundle} | {fallback or '-'} | {statistics.median(a for a, _ in rows):.0f} | "
              f"{statistics.median(b for _, b in rows):.0f} | {answers} |")


def warm_up(server: Server, calls: dict[str, dict]) -> None:
    """One call of each version through POST /api/run, so the server has it loaded before the visits."""
    account = {"user": "warmup", "password": "correct horse battery"}
    token = httpx.post(f"{server.url}/api/sync/register", json=account).json()["token"]
    for path, args in calls.items():
        answer = httpx.post(f"{server.url}/api/run/{path}", json={"args": args}, timeout=120,
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text


def visit(context, server: Server, bundle: str, fallback: str, user: str) -> dict:
    """One first visit in `context`: its open() and first answer times, in ms."""
    from e2e.test_offload import FIRST_VISIT, PROBE_PAGE

    if bundle == "transformers.js":
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(server.url + "/bench/speed.html")
        page.wait_for_function("document.title === 'ready'")
        ms = page.evaluate("o => window.startup(o)", {"path": "transformersjs", "text": SENTENCES[0], "tokens": None})["ms"]
        return {"openedMs": ms, "firstAnswerMs": ms}  # its pipeline is ready with its first answer
    account = {"user": user, "password": "correct horse battery"}
    token = httpx.post(f"{server.url}/api/sync/register", json=account).json()["token"]
    context.route(server.url + PROBE_PAGE, lambda route: route.fulfill(
        content_type="text/html", body="<!doctype html><title>first visit</title>"))
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server.url + PROBE_PAGE)
    script = FIRST_VISIT if bundle == "digits" else MINILM_VISIT
    return page.evaluate(script, {"account": {"user": account["user"], "token": token}, "fallback": fallback,
                                  "text": SENTENCES[0]})


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (its threads included), from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
