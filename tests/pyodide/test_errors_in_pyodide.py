"""The browser side of errors and logs, in real Pyodide under Node: the same code and message as CPython
for the same bad input, an import failure in one line, ctx.log lines on the console by level at INFO."""

from __future__ import annotations

import asyncio
import json
import runpy
import subprocess
from pathlib import Path

import pytest

from waystation.device import App
from waystation.device.arguments import load_arguments
from waystation.device.errors import error_detail

HERE = Path(__file__).parent
CHECKS = HERE / "errors_checks.py"
CASES = runpy.run_path(str(CHECKS), run_name="errors_checks")["CASES"]


@pytest.fixture(scope="module")
def digits(site_dir: Path) -> Path:
    return site_dir / "bundles" / "digits" / "1.0.0"


@pytest.fixture(scope="module")
def pyodide_results(site_dir: Path, digits: Path, project_root: Path) -> dict:
    out = subprocess.run(["node", str(HERE / "harness.mjs"), str(site_dir), str(digits), str(CHECKS)],
                         cwd=project_root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for name, result in results.items():
        assert result["ok"], f"{name}: {result.get('error')}"
    return {name: result["value"] for name, result in results.items()}


def on_cpython(bundle: Path, function: str, text: str) -> dict:
    async def run() -> dict:
        app = await App.open(bundle)
        try:
            return {"result": (await app.call(function, load_arguments(function, text)))["result"]}
        except Exception as exc:
            error = error_detail(exc)
            return {key: error[key] for key in ("code", "message", "pythonType")} | {"type": error["code"]}
        finally:
            app.close()

    return asyncio.run(run())


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_bad_input_gives_the_same_code_and_message_on_both_hosts(pyodide_results, digits, case):
    assert pyodide_results["check_error_replies"][case] == on_cpython(digits, *CASES[case])


def test_the_codes_are_the_documented_ones(pyodide_results):
    replies = pyodide_results["check_error_replies"]
    assert replies["type_error_with_path"] == {
        "code": "invalid-argument", "type": "invalid-argument", "pythonType": "ArgumentError",
        "message": "classify_features(): features[0][2]: expected float, got str"}
    assert replies["nan"]["message"] == ("classify_features(): features[0][1]: expected a finite number, got NaN "
                                         "(JSON has no NaN or Infinity)")
    raised = replies["workflow_exception"]
    assert (raised["code"], raised["pythonType"], raised["message"]) == (
        "workflow-error", "ValueError", "the image is blank: draw a digit first")
    assert replies["no_such_function"]["code"] == "no-such-function"


def test_an_import_failure_is_one_line(pyodide_results):
    assert pyodide_results["check_import_failure_is_one_line"] == {
        "code": "workflow-import-failed", "pythonType": "WorkflowError",
        "message": "workflow.py line 3: SyntaxError: invalid syntax"}


def test_log_lines_reach_the_console_by_level_at_info_unless_set(pyodide_results):
    at_info = [["info", "[digits -] INFO i"], ["warn", "[digits -] WARNING w"], ["error", "[digits -] ERROR e"]]
    at_debug = [["debug", "[digits -] DEBUG d"], *at_info]
    assert pyodide_results["check_log_lines_go_to_the_console_by_level"] == [*at_info, *at_debug]
