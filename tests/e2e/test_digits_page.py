"""The vertical slice in a real browser: boot, call, parity with CPython, errors, offline."""

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import BOOT_TIMEOUT_MS, wait_ready

OPEN_AND_CALL = """async ([name, args]) => {
  const { open } = await import("/waystation.js");
  const app = await open({ bundle: "digits" });
  try {
    return { ok: true, value: await app.call(name, args), version: app.version };
  } catch (e) {
    return { ok: false, name: e.name, message: e.message, pythonType: e.pythonType, isError: e instanceof Error };
  } finally {
    app.close();
  }
}"""


def run_on_cpython(site_dir, function: str, args: dict):
    bundle = site_dir / "bundles" / "digits" / "1.0.0"
    out = subprocess.run([sys.executable, "-m", "waystation", "run", str(bundle), function, "--args", json.dumps(args)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_demo_page_boots_cross_origin_isolated_and_classifies_a_sample(digits_page):
    assert "cross-origin isolated: true" in digits_page.text_content("#facts")
    digits_page.click(".samples button >> nth=0")
    digits_page.wait_for_function("document.querySelector('#latency').textContent.includes('on-device latency')")
    assert digits_page.text_content("#answer") == "0"
    assert digits_page.locator("#top li").count() == 3


def test_drawing_on_the_pad_is_classified(digits_page):
    box = digits_page.locator("#pad").bounding_box()
    digits_page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15)
    digits_page.mouse.down()
    digits_page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.85, steps=12)
    digits_page.mouse.up()  # a vertical stroke: a one
    digits_page.wait_for_function("document.querySelector('#latency').textContent.includes('on-device latency')")
    assert digits_page.text_content("#answer") == "1"


def test_call_matches_waystation_run_on_cpython(digits_page, site_dir):
    samples = run_on_cpython(site_dir, "samples", {})
    args = {"features": [s["pixels"] for s in samples]}
    browser = digits_page.evaluate(OPEN_AND_CALL, ["classify_features", args])
    assert browser["ok"], browser
    assert browser["version"] == "1.0.0"
    cpython = run_on_cpython(site_dir, "classify_features", args)
    assert [r["digit"] for r in browser["value"]] == [r["digit"] for r in cpython]
    # Tolerance: float32 kernels of onnxruntime-web (WASM SIMD) and onnxruntime differ in the last bits.
    p_browser = np.array([[t["p"] for t in r["top"]] for r in browser["value"]])
    p_cpython = np.array([[t["p"] for t in r["top"]] for r in cpython])
    np.testing.assert_allclose(p_browser, p_cpython, atol=1e-5)


def test_tensor_results_arrive_as_typed_arrays_equal_to_cpython(digits_page, site_dir):
    samples = run_on_cpython(site_dir, "samples", {})
    args = {"features": [s["pixels"] for s in samples]}
    browser = digits_page.evaluate(OPEN_AND_CALL.replace("value: await app.call(name, args)",
        "value: await app.call(name, args).then((t) => ({...t, kind: t.data.constructor.name, data: Array.from(t.data)}))"),
        ["probabilities", args])
    assert browser["ok"], browser
    value = browser["value"]
    assert (value["kind"], value["dtype"], value["shape"]) == ("Float32Array", "float32", [len(samples), 10])
    cpython = np.array(run_on_cpython(site_dir, "probabilities", args), dtype=np.float32)
    np.testing.assert_allclose(np.array(value["data"]).reshape(value["shape"]), cpython, atol=1e-5)


@pytest.mark.parametrize(
    ("function", "args", "name", "python_type", "message"),
    [
        ("classify", {"pixels": [0.0] * 4, "width": 2, "height": 2}, "workflow-error", "ValueError",
         "the image is blank: draw a digit first"),
        ("classify", {"pixels": [0.0] * 4, "width": 2}, "invalid-argument", "ArgumentError",
         "classify(): missing a required argument: 'height'"),
        ("classify", {"pixels": "ink", "width": 1, "height": 3}, "invalid-argument", "ArgumentError",
         "classify(): pixels: expected list[float], got str"),
        ("nope", {}, "no-such-function", "NoSuchFunctionError", "no exported function 'nope'"),
    ],
)
def test_python_errors_reject_the_promise_with_code_type_and_message(digits_page, function, args, name, python_type, message):
    result = digits_page.evaluate(OPEN_AND_CALL, [function, args])
    assert not result["ok"] and result["isError"]
    assert (result["name"], result["pythonType"]) == (name, python_type)
    assert message in result["message"]


def test_unknown_bundle_rejects_with_a_clear_error(digits_page):
    result = digits_page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      try { await open({ bundle: "no-such-bundle" }); return null; }
      catch (e) { return { name: e.name, message: e.message }; }
    }""")
    assert result == {"name": "not-found", "message": 'no version of bundle "no-such-bundle" to fetch: channel "stable" has no '
                      "release for this device and the site has no build of it "
                      "(HTTP 404 for /bundles/no-such-bundle/latest.json)"}


def test_offline_reload_still_boots_and_answers(digits_page, context, server):
    digits_page.evaluate("navigator.serviceWorker.ready")  # the shell is precached once the worker is active
    context.set_offline(True)
    assert digits_page.evaluate("fetch('/api/health').then(() => 'online', () => 'offline')") == "offline"
    digits_page.reload()
    wait_ready(digits_page)
    digits_page.click(".samples button >> nth=4")
    digits_page.wait_for_function("document.querySelector('#latency').textContent.includes('on-device latency')",
                           timeout=BOOT_TIMEOUT_MS)
    assert digits_page.text_content("#answer") == "2"
    assert digits_page.evaluate("navigator.serviceWorker.controller !== null")
