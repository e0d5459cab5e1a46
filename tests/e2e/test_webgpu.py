"""Where models run (web/execution.js): WebGPU or WASM, in Chromium with a WebGPU adapter and without.

Chromium launched without --disable-gpu and with --enable-unsafe-webgpu offers SwiftShader, a
software (CPU-emulated) adapter; the shared browser (--disable-gpu) offers none. A small MLP
bundle that offers WebGPU (gpu_mlp.py) is built into a copy of the site for these tests; the
digits bundle does not offer it.

MiniLM is left out: forced onto SwiftShader it answers equal to WASM within 1.2e-3 (int8
kernels), but its first call compiles shaders for 16-40 s on this machine (bench/webgpu.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from waystation.bundles.builder import build_bundle
from waystation.bundles.signing import dev_key

from .conftest import CHROMIUM, CHROMIUM_ARGS, csp_checked
from .gpu_mlp import write_source

WEBGPU_ARGS = [*(a for a in CHROMIUM_ARGS if a != "--disable-gpu"), "--enable-unsafe-webgpu"]

# Open a bundle with open()'s `webgpu` option and call a function returning a tensor.
OPEN_AND_CALL = """async ([bundle, webgpu, name, args]) => {
  const { open } = await import("/waystation.js");
  const app = await open({ bundle, webgpu, serviceWorker: false });
  try {
    const started = performance.now();
    const value = await app.call(name, args);
    return { providers: app.info.executionProviders, reason: app.info.executionReason,
             data: Array.from(value.data), shape: value.shape, callMs: performance.now() - started };
  } finally {
    app.close();
  }
}"""

ROWS = [[((i * 7 + j * 3) % 11) / 5 - 1 for j in range(64)] for i in range(8)]
DIGITS = [[float((i * 5 + j) % 17) for j in range(64)] for i in range(4)]


@pytest.fixture(scope="module")
def gpu_site(site_dir: Path, tmp_path_factory: pytest.TempPathFactory, start_server) -> Any:
    """The built site (hard links) with the gpu-mlp bundle added, on a server of its own."""
    tmp = tmp_path_factory.mktemp("webgpu")
    root = tmp / "dist"
    shutil.copytree(site_dir, root, copy_function=os.link)
    source = write_source(tmp / "gpu-mlp")
    build_bundle(source, root / "bundles", lambda _msg: None, key=dev_key(), chunk_store=root / "chunks")
    return start_server(root)


@pytest.fixture(scope="module")
def gpu_browser(browser: Browser) -> Iterator[Browser]:
    """Chromium of its own, with WebGPU: SwiftShader's adapter here (the shared browser has none)."""
    launched = browser.browser_type.launch(executable_path=CHROMIUM, args=WEBGPU_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def gpu_context(gpu_browser: Browser) -> Iterator[BrowserContext]:
    """As conftest's `context`, in the WebGPU browser: a CSP violation fails the test."""
    with csp_checked(gpu_browser) as context:
        yield context


def blank_page(context: BrowserContext, server: Any) -> Page:
    """A page of the site that runs no app of its own (no service worker, nothing preloaded)."""
    page = context.new_page()
    page.goto(f"{server.url}/boot.json")
    return page


def call(page: Page, bundle: str, webgpu: str, name: str, args: dict) -> dict:
    return page.evaluate(OPEN_AND_CALL, [bundle, webgpu, name, args])


def test_forced_webgpu_runs_the_model_there_and_agrees_with_wasm(gpu_context, gpu_site):
    page = blank_page(gpu_context, gpu_site)
    assert page.evaluate("navigator.gpu.requestAdapter().then((a) => a.info.architecture)") == "swiftshader"
    gpu = call(page, "gpu-mlp", "force", "probabilities", {"rows": ROWS})
    wasm = call(page, "gpu-mlp", "never", "probabilities", {"rows": ROWS})
    assert gpu["providers"] == ["webgpu", "wasm"], gpu["reason"]
    assert gpu["reason"] == "webgpu: forced (open() option) on software adapter google swiftshader"
    assert (wasm["providers"], wasm["reason"]) == (["wasm"], 'wasm: webgpu is "never" (open() option)')
    assert gpu["shape"] == wasm["shape"] == [len(ROWS), 10]
    # WebGPU's float32 shaders and WASM's SIMD kernels sum in other orders: equal to 1e-5 (measured ~1e-7).
    np.testing.assert_allclose(np.array(gpu["data"]), np.array(wasm["data"]), rtol=0, atol=1e-5)
    assert np.array(wasm["data"]).std() > 0.01  # outputs that differ from row to row, not a constant


def test_by_default_a_software_adapter_runs_models_on_wasm(gpu_context, gpu_site):
    page = blank_page(gpu_context, gpu_site)
    auto = call(page, "gpu-mlp", "auto", "probabilities", {"rows": ROWS[:2]})
    assert auto["providers"] == ["wasm"]
    assert auto["reason"].startswith("wasm: software adapter google swiftshader"), auto["reason"]


def test_when_the_webgpu_build_cannot_be_fetched_models_run_on_wasm(gpu_context, gpu_site):
    # As offline before the WebGPU build was ever fetched: it is not in the precached shell.
    gpu_context.route("**/ort/ort.webgpu.min.mjs", lambda route: route.abort())
    page = blank_page(gpu_context, gpu_site)
    forced = call(page, "gpu-mlp", "force", "probabilities", {"rows": ROWS[:2]})
    assert forced["providers"] == ["wasm"]
    assert forced["reason"].startswith("wasm: onnxruntime-web's WebGPU build did not load ("), forced["reason"]
    assert forced["shape"] == [2, 10]


def test_a_model_the_webgpu_build_cannot_load_runs_on_wasm_with_the_reason(gpu_context, gpu_site):
    # digits is all ai.onnx.ml operators (Scaler, Normalizer, LinearClassifier), which
    # onnxruntime-web's WebGPU build does not have: forced there, it falls back to WASM.
    page = blank_page(gpu_context, gpu_site)
    forced = call(page, "digits", "force", "probabilities", {"features": DIGITS})
    wasm = call(page, "digits", "never", "probabilities", {"features": DIGITS})
    assert forced["providers"] == ["wasm"]
    assert forced["reason"].startswith("wasm: onnxruntime-web's WebGPU build cannot load classifier.onnx"), forced["reason"]
    assert "Scaler" in forced["reason"]
    assert forced["data"] == wasm["data"]  # the same WASM build ran both


def test_without_an_adapter_models_run_on_wasm_and_the_webgpu_build_is_never_fetched(context, gpu_site):
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = blank_page(context, gpu_site)
    assert page.evaluate("navigator.gpu ? navigator.gpu.requestAdapter().then((a) => a === null) : true")
    auto = call(page, "gpu-mlp", "auto", "probabilities", {"rows": ROWS[:2]})
    forced = call(page, "gpu-mlp", "force", "probabilities", {"rows": ROWS[:2]})
    assert auto["providers"] == forced["providers"] == ["wasm"]
    assert auto["reason"] == forced["reason"] == "wasm: no adapter (requestAdapter() found none)"
    assert auto["data"] == forced["data"]
    plain = call(page, "digits", "auto", "probabilities", {"features": DIGITS[:1]})
    assert (plain["providers"], plain["reason"]) == (["wasm"], "wasm: the bundle does not offer webgpu")
    fetched = [url for url in requests if "/ort/" in url]
    assert fetched and not [url for url in fetched if "webgpu" in url or "asyncify" in url], fetched


def test_an_unknown_webgpu_option_is_refused_by_name(context, gpu_site):
    page = blank_page(context, gpu_site)
    error = page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      try { await open({ bundle: "gpu-mlp", webgpu: "always", serviceWorker: false }); return null; }
      catch (e) { return { name: e.name, message: e.message }; }
    }""")
    assert error == {"name": "TypeError", "message": 'open(): `webgpu` must be one of "auto", "force", "never", got "always"'}
