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
SPEAKS = """from waystation.device import export

@export
def speak(ctx) -> int:
    for level in ("debug", "info", "warning", "error"):
        getattr(ctx.log, level)("said at %s", level)
    return 4
"""


@pytest.fixture(scope="module")
def broken_bundle(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 1.0.0 renamed "broken", with a workflow that does not parse, signed by the site's key."""
    return signed_copy(site_dir, tmp_path_factory.mktemp("broken"), "broken", BROKEN)


@pytest.fixture(scope="module")
def speaking_bundle(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 1.0.0 renamed "speaks", its workflow one function that logs at every level."""
    return signed_copy(site_dir, tmp_path_factory.mktemp("speaks"), "speaks", SPEAKS)


def signed_copy(site_dir: Path, tmp: Path, name: str, script: str) -> Path:
    folder = shutil.copytree(site_dir / "bundles" / "digits" / "1.0.0", tmp / "1.0.0")
    manifest = json.loads((folder / "manifest.json").read_text())
    workflow = script.encode()
    (folder / manifest["workflow"]).write_bytes(workflow)
    for entry in manifest["files"]:
        if entry["path"] == manifest["workflow"]:
            entry.update(size=len(workflow), sha256=hashlib.sha256(workflow).hexdigest(),
                         chunks=[list(c) for c in split(workflow)])
    manifest.update(name=name, models={})
    manifest.pop("signature", None)
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(manifest, dev_key())))
    return folder


def serve(context: BrowserContext, name: str, folder: Path) -> None:
    """The page's requests for bundle `name` answered from `folder` (the site has no such bundle)."""
    def handle(route: Route) -> None:
        path = route.request.url.split(f"/bundles/{name}/", 1)[1].split("?")[0]
        if path == "latest.json":
            route.fulfill(status=200, body=json.dumps({"version": "1.0.0"}), headers={"Content-Type": "application/json"})
        else:
            route.fulfill(status=200, body=(folder.parent / path).read_bytes())

    context.route(f"**/bundles/{name}/**", handle)


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
    serve(context, "broken", broken_bundle)
    result = digits_page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      try { await open({ bundle: "broken", serviceWorker: false }); return null; }
      catch (e) { return { name: e.name, message: e.message, pythonType: e.pythonType }; }
    }""")
    assert result == {"name": "workflow-import-failed", "pythonType": "WorkflowError",
                      "message": "workflow.py line 3: SyntaxError: invalid syntax"}


def test_log_lines_reach_the_console_by_level_at_the_level_open_was_given(context: BrowserContext, digits_page: Page,
                                                                            speaking_bundle: Path):
    serve(context, "speaks", speaking_bundle)
    lines: list[tuple[str, str]] = []
    digits_page.on("console", lambda m: lines.append((m.type, m.text)) if "said at" in m.text else None)
    for level in ("info", "debug"):
        said = digits_page.evaluate("""async (level) => {
          const { open } = await import("/waystation.js");
          const app = await open({ bundle: "speaks", serviceWorker: false, ...(level === "info" ? {} : { logLevel: level }) });
          try { return await app.call("speak", {}); } finally { app.close(); }
        }""", level)
        assert said == 4
    digits_page.wait_for_timeout(500)  # console events arrive on their own
    at_info = [("info", "[speaks speak] INFO said at info"), ("warning", "[speaks speak] WARNING said at warning"),
               ("error", "[speaks speak] ERROR said at error")]
    assert lines == [*at_info, ("debug", "[speaks speak] DEBUG said at debug"), *at_info]
