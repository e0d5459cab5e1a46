"""MiniLM end to end: Waystation vs transformers.js vs raw onnxruntime-web, one page, one model file.

    .venv/bin/python bench/minilm_latency.py [--runs 20] [--rounds 3]

Prints median latency (text in, embedding out) for batch 1 and 32, the ratios, start-up
times, and the largest difference between the three paths' embeddings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "models" / "minilm")]

from playwright.sync_api import sync_playwright  # noqa: E402

from waystation.site import build_site  # noqa: E402

from conftest import Server  # noqa: E402  (the real server the tests use)
from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# Short English sentences, as in the first anchor measurements (transformers.js vs raw ORT).
SENTENCES = [
    "The cat sits on the mat.", "I love offline-first apps.", "Where is the nearest train station?",
    "Buy milk, eggs and bread.", "The meeting moved to Thursday.", "Python runs in the browser now.",
    "It rained all day in Lisbon.", "Remember to call the dentist.", "This model fits in 23 megabytes.",
    "A quick brown fox jumps over the lazy dog.", "Deadlines are closer than they appear.",
    "She plays the violin beautifully.", "The server restarted overnight.", "Coffee first, then email.",
    "Our flight leaves at seven.", "Plants need water and light.", "The museum opens at ten.",
    "He fixed the bug before lunch.", "Sync resumes when the network returns.", "Tea or coffee?",
    "The report is due on Friday.", "Bring an umbrella tomorrow.", "Books are better than films.",
    "The kids built a sandcastle.", "Turn left after the bridge.", "The soup needs more salt.",
    "We hiked to the top of the hill.", "Update the app to the latest version.", "Her code compiles on the first try.",
    "The library is quiet today.", "Let's meet at the corner cafe.", "Music makes long drives shorter.",
]


def site_with_bench(work: Path) -> Path:
    site = work / "dist"
    build_site(ROOT, site, progress=lambda _m: None)
    bench = site / "bench"
    shutil.copytree(ROOT / "bench" / "web", bench)
    tjs = ROOT / "node_modules" / "@huggingface" / "transformers"
    (bench / "tjs").mkdir()
    shutil.copy(tjs / "dist" / "transformers.js", bench / "tjs")
    ort_dist = tjs / "node_modules" / "onnxruntime-web" / "dist"
    for variant in ("jsep", "asyncify"):
        for ext in ("mjs", "wasm"):
            shutil.copy(ort_dist / f"ort-wasm-simd-threaded.{variant}.{ext}", bench / "tjs")
    # transformers.js reads a model folder: configs and tokenizer beside onnx/model_quantized.onnx.
    from weights import model_dir

    bundle = next((site / "bundles" / "minilm").glob("*/manifest.json")).parent
    manifest = json.loads((bundle / "manifest.json").read_text())
    folder = bench / "models" / "minilm"
    (folder / "onnx").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(model_dir() / name, folder)
    shutil.copy(bundle / manifest["models"]["encoder"]["file"], folder / "onnx" / "model_quantized.onnx")
    return site


def pre_tokenised(texts: list[str]) -> dict:
    """Hugging Face `tokenizers` output for the raw-ORT path, padded to the longest in the batch."""
    from tokenizers import Tokenizer

    from weights import model_dir

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    return {"ids": [e.ids for e in enc], "mask": [e.attention_mask for e in enc], "types": [e.type_ids for e in enc]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waystation-minilm-bench-"))
    server = Server(site_with_bench(work), work / "data").start()
    results = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for batch in (1, 32):
                page = browser.new_page()  # a fresh page per batch size: no state carried over
                page.on("console", lambda m: m.type == "error" and print("console:", m.text, file=sys.stderr))
                page.goto(server.url + "/bench/minilm.html")
                page.wait_for_function("document.title === 'ready'")
                results.append(page.evaluate("o => window.benchmark(o)", {
                    "texts": SENTENCES, "tokens": pre_tokenised(SENTENCES[:batch]),
                    "runs": args.runs, "rounds": args.rounds, "batch": batch}))
                page.close()
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def report(results: list[dict], args: argparse.Namespace) -> None:
    import numpy as np

    print(f"MiniLM int8, headless Chromium, 1 ORT thread, {args.rounds} rounds x {args.runs} calls, medians")
    print(f"{'batch':>5} {'waystation':>11} {'transf.js':>10} {'raw ORT':>8} {'x tjs':>6} {'x raw':>6} "
          f"{'tokenize':>9} {'model':>7} {'python':>7} {'worker':>7} {'page':>7}")
    for r in results:
        m, w = r["medianMs"], r["waystationParts"]
        print(f"{r['batch']:>5} {m['waystation']:>11.2f} {m['transformersjs']:>10.2f} {m['rawOrt']:>8.2f} "
              f"{m['waystation'] / m['transformersjs']:>6.2f} {m['waystation'] / m['rawOrt']:>6.2f} "
              f"{w['tokenizeMs']:>9.2f} {w['modelMs']:>7.2f} {w['pythonMs']:>7.2f} {w['workerMs']:>7.2f} {w['pageMs']:>7.2f}")
    s = results[0]["startupMs"]
    print(f"start-up to first embedding: waystation {s['waystation']:.0f} ms, transformers.js {s['transformersjs']:.0f} ms, "
          f"raw ORT session {s['rawOrt']:.0f} ms")
    for r in results:
        out = {k: np.asarray(v, dtype=np.float32) for k, v in r["outputs"].items()}
        diff = max(float(np.abs(out["waystation"] - out[k]).max()) for k in ("transformersjs", "rawOrt"))
        print(f"batch {r['batch']}: max |embedding difference| between the three paths {diff:.2e}")


if __name__ == "__main__":
    main()
