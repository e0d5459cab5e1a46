"""Errors in a real page, as docs/errors.md describes them: `e.name` is a code, the Python type and traceback
are fields of their own, an import failure is one line, and each says what CPython says for the same input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Route

from waystation.bundles.builder import manifest_text
from waystation.bundles.chunks import split
from waystation.bundles.signing import dev_key, sign_manifest

CALL = """async ([name, args]) => {
  const { open } = await import("/waystation.js");
  const app = await open({ bundle: "digits" });
  try {
    return { ok: true, value: await app.call(name, args) };
  } catch (e) {
    return { ok: false, name: e.name, type: e.type, message: e.message, pythonType: e.pythonType,
             traceback: e.traceback ?? null, isError: e instanceof Error };
  } finally {
    app.close();
  }
}"""
BROKEN = "from waystation.device import export\n\ndef f(:\n    pass\n"


@pytest.fixture(scope="module")
def broken_bundle(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 1.0.0 renamed "broken", with a workflow that does not parse, signed by the site's key."""
    folder = shutil.copytree(site_dir / "bundles" / "digits" / "1.0.0", tmp_path_factory.mktemp("broken") / "1.0.0")
    manifest = json.loads((folder / "manifest.json").read_text())
    workflow = BROKEN.encode()
    (folder / manifest["workflow"]).write_bytes(workflow)
    for entry in manifest["files"]:
        if entry["path"] == manifest["workflow"]:
            entry.update(size=len(workflow), sha256=hashlib.sha256(workflow).hexdigest(),
                         chunks=[list(c) for c in split(workflow)])
    manifest.update(name="broken", models={})
    manifest.pop("signature", None)
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(manifest, dev_key())))
    return folder


def serve_broken(context: BrowserContext, folder: Path) -> None:
    """The page's requests for bundle "broken" answered from `folder` (the site has no such bundle)."""
    def handle(route: Route) -> None:
        path = route.request.url.split("/bundles/broken/", 1)[1].split("?")[0]
        if path == "latest.json":
            route.fulfill(status=200, body=json.dumps({"version": "1.0.0"}), headers={"Content-Type": "application/json"})
        else:
            route.fulfill(status=200, body=(folder.parent / path).read_bytes())

    context.route("**/bundles/broken/**", handle)


def on_cpython(site_dir: Path, function: str, text: str) -> tuple[str, str]:
    """(code, message) of `waystation run` for the same call: its one line, `error: CODE: message`.

    In a process of its own: sync Playwright keeps an event loop running on this thread.
    """
    out = subprocess.run([sys.executable, "-m", "waystation", "run", str(site_dir / "bundles" / "digits" / "1.0.0"), function,
                          "--args", text], capture_output=True, text=True, timeout=300)
    line = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and line.startswith("error: "), out.stderr
    code, _, message = line[len("error: "):].partition(": ")
    return code, message


@pytest.mark.parametrize(("args", "text", "message"), [
    ({"features": [[0, 1, "x"]]}, '{"features": [[0, 1, "x"]]}', "classify_features(): features[0][2]: expected float, got str"),
    ("NaN", '{"features": [[0, 1, NaN]]}',
     "classify_features(): features[0][2]: expected a finite number, got NaN (JSON has no NaN or Infinity)"),
])
def test_a_bad_argument_is_invalid_argument_naming_its_path_as_on_cpython(digits_page: Page, site_dir, args, text, message):
    if args == "NaN":  # a value JSON cannot carry: the page's own NaN, not a string
        result = digits_page.evaluate(CALL.replace("app.call(name, args)", "app.call(name, { features: [[0, 1, NaN]] })"),
                                      ["classify_features", None])
    else:
        result = digits_page.evaluate(CALL, ["classify_features", args])
    assert not result["ok"] and result["isError"]
    assert (result["name"], result["type"], result["pythonType"], result["message"]) == (
        "invalid-argument", "invalid-argument", "ArgumentError", message)
    assert on_cpython(site_dir, "classify_features", text) == ("invalid-argument", message)


def test_a_workflow_exception_is_workflow_error_with_its_python_type(digits_page: Page, site_dir):
    args = {"pixels": [0.0] * 4, "width": 2, "height": 2}
    result = digits_page.evaluate(CALL, ["classify", args])
    assert (result["name"], result["pythonType"], result["message"]) == (
        "workflow-error", "ValueError", "the image is blank: draw a digit first")
    assert "Traceback" in result["traceback"] and "Traceback" not in result["message"]
    assert on_cpython(site_dir, "classify", json.dumps(args)) == (
        "workflow-error", "ValueError: the image is blank: draw a digit first")


def test_a_workflow_that_fails_to_import_says_so_in_one_line(context: BrowserContext, digits_page: Page, broken_bundle: Path):
    serve_broken(context, broken_bundle)
    result = digits_page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      try { await open({ bundle: "broken", serviceWorker: false }); return null; }
      catch (e) { return { name: e.name, message: e.message, pythonType: e.pythonType }; }
    }""")
    assert result == {"name": "workflow-import-failed", "pythonType": "WorkflowError",
                      "message": "workflow.py line 3: SyntaxError: invalid syntax"}
