"""What a device on v1 transfers to reach v2, in a real browser against the real server.

    .venv/bin/python bench/delta_update.py [--bundle minilm] [--runs 3]

The site's bundle is v1 (`waystation serve` publishes it on "stable"). v2 is v1 with its last
encoder layer retrained: every tensor of that layer gets new values of the same size, as a
fine-tune of the last layer would give; v2 is built, signed and published on "beta". Then, on a
fresh device in headless Chromium: `open()` installs v1, and `app.update({channel: "beta"})`
fetches what v2 needs, verifies it, runs v2's smoke check in a fresh worker and activates it.

Printed: bytes transferred (chunks + manifest) against a full download of v2 and against the
bytes that really changed (the raw bytes of the retrained tensors: the physical limit of a
delta that knows nothing of the model's layout), and the time from "update available" to
"v2 active" on loopback.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from waystation.bundles.builder import build_bundle  # noqa: E402
from waystation.bundles.signing import dev_key  # noqa: E402
from waystation.server.registry import Registry  # noqa: E402
from waystation.site import build_site  # noqa: E402

from conftest import Server  # noqa: E402  (the real server the tests use)
from e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

LAYER = re.compile(r"layer\.(\d+)\.")
INSTALL_AND_UPDATE = """async ([bundle]) => {
  const { open } = await import("/waystation.js");
  let started = performance.now();
  const app = await open({ bundle });
  const installMs = performance.now() - started;
  const marks = {};
  started = performance.now();
  const result = await app.update({ channel: "beta", onProgress: (p) => { marks[p.stage] ??= performance.now(); } });
  const done = performance.now();
  const versions = await app.versions();
  app.close();
  return {
    installMs, result, version: versions.active,
    callToActiveMs: done - started,
    availableToActiveMs: done - marks.available,
    downloadMs: marks["smoke-check"] - marks.available,
    smokeCheckMs: done - marks["smoke-check"],
  };
}"""


def retrain_last_layer(model_path: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Write `model_path` with new values in every tensor of its last layer; return {tensor: raw bytes}."""
    model = onnx.load(str(model_path))
    last = max(int(m.group(1)) for i in model.graph.initializer if (m := LAYER.search(i.name)))
    rng = np.random.default_rng(seed)
    changed = {}
    for tensor in model.graph.initializer:
        if f"layer.{last}." not in tensor.name:
            continue
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind == "f":
            new = (values * (1 + 0.02 * rng.standard_normal(values.shape))).astype(values.dtype)
        elif tensor.name.endswith("zero_point"):
            continue  # a fine-tune re-quantizes with the same (symmetric) zero point
        else:
            info = np.iinfo(values.dtype)
            new = np.clip(values.astype(np.int32) + rng.integers(-3, 4, values.shape), info.min, info.max).astype(values.dtype)
        _store(tensor, new)
        changed[tensor.name] = new.nbytes
    out.write_bytes(model.SerializeToString())
    assert out.stat().st_size == model_path.stat().st_size, "the retrained tensors kept their sizes"
    return changed


def _store(tensor: onnx.TensorProto, values: np.ndarray) -> None:
    """New values in the field the tensor keeps them in (raw bytes, or float_data for scalars)."""
    if tensor.HasField("raw_data"):
        tensor.raw_data = values.tobytes()
    else:
        field = tensor.float_data if values.dtype.kind == "f" else tensor.int32_data
        del field[:]
        field.extend(values.ravel().tolist())


def make_v2(v1: Path, work: Path) -> tuple[Path, dict[str, int]]:
    """A bundle source holding v1's files with the encoder's last layer retrained, built and signed."""
    manifest = json.loads((v1 / "manifest.json").read_text())
    source = work / "v2-source"
    source.mkdir()
    version = manifest["version"].split(".")
    version[2] = str(int(version[2]) + 1)
    models = manifest["models"]
    encoder = max(models, key=lambda k: (v1 / models[k]["file"]).stat().st_size)
    changed = retrain_last_layer(v1 / models[encoder]["file"], source / models[encoder]["file"])
    model_files = {m["file"] for m in models.values()}
    for entry in manifest["files"]:
        if not (source / entry["path"]).exists():
            shutil.copyfile(v1 / entry["path"], source / entry["path"])
    extra = [f["path"] for f in manifest["files"] if f["path"] not in model_files and f["path"] != manifest["workflow"]]
    toml = [f'name = "{manifest["name"]}"', f'version = "{".".join(version)}"', f'parent = "{manifest["version"]}"',
            f'workflow = "{manifest["workflow"]}"', f"files = {json.dumps(extra)}"]
    for name, model in models.items():
        toml += ["", f"[models.{name}]", f'file = "{model["file"]}"']
    (source / "bundle.toml").write_text("\n".join(toml) + "\n")
    built = build_bundle(source, work / "v2", progress=lambda _m: None, key=dev_key(), chunk_store=work / "v2" / "chunks")
    return built, changed


def without_grouping(bundle: str, model_file: str, work: Path) -> tuple[int, int]:
    """(new chunk bytes, changed bytes) of the same update on the model as its recipe lays it out,
    i.e. without the builder's grouping by layer (waystation.bundles.layout): chunked here, no browser."""
    from waystation.bundles.builder import _recipe_output
    from waystation.bundles.chunks import split
    from waystation.bundles.source import BundleSource

    made = _recipe_output(BundleSource.load(ROOT / "models" / bundle), lambda _m: None) / model_file
    retrained = work / "as-made-v2.onnx"
    changed = retrain_last_layer(made, retrained)
    have = {sha for sha, _ in split(made.read_bytes())}
    return sum(size for sha, size in dict(split(retrained.read_bytes())).items() if sha not in have), sum(changed.values())


def differing_bytes(a: Path, b: Path) -> int:
    x, y = np.fromfile(a, dtype=np.uint8), np.fromfile(b, dtype=np.uint8)
    return int(np.count_nonzero(x != y)) if x.size == y.size else max(x.size, y.size)


def chunks(manifest: dict) -> dict[str, int]:
    return {sha: size for f in manifest["files"] for sha, size in f["chunks"]}


def measure(server: Server, bundle: str, runs: int) -> list[dict]:
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(runs):
            context = browser.new_context()  # a fresh device: nothing stored
            requested: list[str] = []
            wire: list[tuple[str, int]] = []  # (url, body bytes as sent: gzip-encoded where it was)
            context.on("request", lambda r, requested=requested: requested.append(r.url))
            context.on("requestfinished", lambda r, wire=wire: wire.append((r.url, r.sizes()["responseBodySize"])))
            page = context.new_page()
            page.goto(f"{server.url}/boot.json")
            run = page.evaluate(INSTALL_AND_UPDATE, [bundle])
            run["requests"], run["wire"] = requested, wire
            results.append(run)
            context.close()
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="minilm", help="a bundle of the site whose model has layer.N. tensors")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        site = work / "dist"
        boot = build_site(ROOT, site, progress=lambda _m: None)
        v1 = site / "bundles" / args.bundle / boot["bundles"][args.bundle]
        v2, changed = make_v2(v1, work)
        m1, m2 = (json.loads((v / "manifest.json").read_text()) for v in (v1, v2))
        new = {sha: size for sha, size in chunks(m2).items() if sha not in chunks(m1)}
        server = Server(site, work / "data").start()
        try:
            Registry(server.data).publish(v2, "beta")
            runs = measure(server, args.bundle, args.runs)
        finally:
            server.stop()
        encoder = max(m1["models"].values(), key=lambda m: (v1 / m["file"]).stat().st_size)["file"]
        report(args.bundle, m1, m2, v1, v2, changed, new, runs, without_grouping(args.bundle, encoder, work))


def report(bundle, m1, m2, v1, v2, changed, new, runs, ungrouped) -> None:
    manifest_bytes = len((v2 / "manifest.json").read_bytes())
    full = sum(chunks(m2).values()) + manifest_bytes
    physical = sum(changed.values())
    differing = sum(differing_bytes(v1 / f["path"], v2 / f["path"]) for f in m2["files"])
    for run in runs:
        assert run["version"] == m2["version"], run["version"]
        fetched = [u.rsplit("/", 1)[1] for u in run["requests"] if "/chunks/" in u]
        update = fetched[len(chunks(m1)):]  # the install fetched each of v1's chunks once, first
        assert sorted(update) == sorted(new), "the update fetched exactly the chunks v1 lacks"
        assert run["result"]["fetchedBytes"] == sum(new[sha] for sha in update)
        run["wireInstall"] = sum(n for u, n in run["wire"] if ("/chunks/" in u and u.rsplit("/", 1)[1] not in new)
                                 or "/channels/stable" in u)
        run["wireUpdate"] = sum(n for u, n in run["wire"] if ("/chunks/" in u and u.rsplit("/", 1)[1] in new)
                                or "/channels/beta" in u)
    result = runs[0]["result"]
    transferred = result["fetchedBytes"] + result["manifestBytes"]
    wire, wire_full = runs[0]["wireUpdate"], runs[0]["wireInstall"]
    median = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    kib = lambda n: f"{n / 1024:,.1f} KiB"  # noqa: E731
    print(f"{bundle} {m1['version']} -> {m2['version']}: the last encoder layer retrained ({len(changed)} tensors)\n")
    print("| | bytes | vs full download | vs changed bytes |")
    print("|---|---|---|---|")
    print(f"| full download (chunks + manifest) | {kib(full)} | 1.00x | {full / physical:.2f}x |")
    print(f"| changed: raw bytes of the retrained tensors (the physical limit) | {kib(physical)} | "
          f"{physical / full:.3f}x | 1.00x |")
    print(f"| (of which differ at the same offset) | {kib(differing)} | | |")
    print(f"| **the update: {len(new)} new chunks + manifest ({kib(result['manifestBytes'])})** | **{kib(transferred)}** | "
          f"**{transferred / full:.3f}x** | **{transferred / physical:.2f}x** |")
    other = ungrouped[0] + result["manifestBytes"]
    print(f"| the same update if the model kept its recipe's layout (no grouping by layer) | {kib(other)} | "
          f"{other / full:.3f}x | {other / ungrouped[1]:.2f}x |")
    print(f"| on the wire, gzip where it pays: a full download (the install of {m1['version']}) | {kib(wire_full)} | | |")
    print(f"| on the wire, gzip where it pays: the update | {kib(wire)} | {wire / wire_full:.3f}x | {wire / physical:.2f}x |")
    print(f"\nsaved against a full download: {1 - transferred / full:.1%} (target >= 90%); "
          f"transferred / changed: {transferred / physical:.2f}x (target <= 1.1x)")
    print(f"\ntimes on loopback, median of {len(runs)} fresh devices:")
    print(f"  first install of {m1['version']} (open(), Python booted in parallel): {median('installMs') / 1000:.2f} s")
    print(f"  update available -> {m2['version']} active: {median('availableToActiveMs') / 1000:.2f} s "
          f"(download + verify {median('downloadMs') / 1000:.2f} s, smoke check in a fresh worker "
          f"{median('smokeCheckMs') / 1000:.2f} s); update() call -> active {median('callToActiveMs') / 1000:.2f} s")


if __name__ == "__main__":
    main()
