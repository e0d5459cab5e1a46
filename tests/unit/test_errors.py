"""One error vocabulary: each exception's code, the reply the worker sends, and docs/errors.md listing every code."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from waystation.device import ArgumentError, Workflow, WorkflowError, _bridge
from waystation.device.errors import (
    BundleError,
    DataError,
    ModelError,
    NoSuchFunctionError,
    SmokeCheckError,
    StaleFeaturesError,
    StateError,
    WaystationError,
    error_code,
    error_detail,
    python_codes,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "errors.md"
SCRIPT = '''
from waystation.device import export

@export
def boom(ctx, x: int):
    raise KeyError("no such thing")
'''


@pytest.mark.parametrize(("cls", "code"), [
    (ArgumentError, "invalid-argument"), (WorkflowError, "workflow-import-failed"), (NoSuchFunctionError, "no-such-function"),
    (ModelError, "model-error"), (BundleError, "bundle-error"), (SmokeCheckError, "smoke-check-failed"),
    (StateError, "state-error"), (DataError, "data-error"), (StaleFeaturesError, "stale-features"),
])
def test_each_error_carries_its_code(cls: type[WaystationError], code: str) -> None:
    assert error_code(cls("x")) == code


def test_an_exception_from_workflow_code_is_a_workflow_error_and_any_other_a_bug(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(SCRIPT)
    workflow = Workflow.load(tmp_path / "wf.py", "test_errors_module")
    with pytest.raises(KeyError) as raised:
        asyncio.run(workflow.call("boom", {"x": 1}, ctx=None))
    assert error_code(raised.value) == "workflow-error"
    with pytest.raises(ArgumentError) as refused:  # refused before the workflow ran: its own code, not workflow-error
        asyncio.run(workflow.call("boom", {"x": "1"}, ctx=None))
    assert error_code(refused.value) == "invalid-argument"
    assert error_code(KeyError("raised by Waystation itself")) == "internal-error"


def test_the_reply_keeps_type_and_traceback_out_of_the_message() -> None:
    try:
        raise ValueError("the image is blank")
    except ValueError as exc:
        reply = json.loads(_bridge._error(exc))
    error = reply["error"]
    assert reply["ok"] is False
    assert error["message"] == "the image is blank"
    assert error["pythonType"] == "ValueError" and error["code"] == error["type"] == "internal-error"
    assert "Traceback" in error["traceback"] and 'raise ValueError("the image is blank")' in error["traceback"]
    assert error_detail(StateError("refused"))["code"] == "state-error"


def documented_codes() -> set[str]:
    return {m[1] for line in DOCS.read_text().splitlines() if (m := re.match(r"\| `([a-z-]+)` \|", line))}


def js_codes() -> set[str]:
    """The codes the JS gives errors: the service worker's message table, and names set in the page and worker."""
    codes = set(re.findall(r'^\s+"([a-z-]+)": \(d\) =>', (ROOT / "service_worker/sw/errors.js").read_text(), re.M))
    for path in [ROOT / "web/waystation.js", ROOT / "web/worker.js", ROOT / "web/device_data.js", ROOT / "web/device_state.js",
                 ROOT / "web/offload.js", ROOT / "web/widget.js"]:
        for line in path.read_text().splitlines():
            if re.search(r"new WaystationError\(|\{ name: \"|const name = |\{ code: \"", line):
                codes.update(re.findall(r'(?:WaystationError\(|name: |code: |[?:] )"([A-Za-z-]+)"', line))
    return codes


def server_codes() -> set[str]:
    """The codes the server's run API answers with (the page meets them through offload)."""
    from waystation.server.run_api import _STATUS

    return set(_STATUS)


def test_every_code_is_documented_once() -> None:
    documented = documented_codes()
    produced = python_codes() | js_codes() | server_codes()
    assert {"invalid-argument", "workflow-error", "chunk-corrupt", "rate-limited"} <= produced  # the readers read
    assert not produced - documented, f"docs/errors.md lacks {sorted(produced - documented)}"
    assert not documented - produced, f"docs/errors.md lists codes nothing gives: {sorted(documented - produced)}"
    rows = [m[1] for line in DOCS.read_text().splitlines() if (m := re.match(r"\| `([a-z-]+)` \|", line))]
    assert len(rows) == len(set(rows)), "a code listed twice"


def test_codes_are_kebab_case() -> None:
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", code) for code in python_codes() | js_codes()), sorted(js_codes())
