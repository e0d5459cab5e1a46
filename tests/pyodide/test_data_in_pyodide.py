"""The same queries in real Pyodide (under Node) and on CPython give the same answers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from data_parity import generate_case, run_case  # noqa: E402


def test_pyodide_and_cpython_answer_every_case_alike(tmp_path: Path, project_root: Path) -> None:
    cases = [generate_case(random.Random(seed)) for seed in range(400)]
    cases.append({"events": [], "items": [], "query": [["where", "nope", "==", 1]], "read": ["count"]})  # errors too
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = subprocess.run(["node", str(HERE / "data_harness.mjs"), str(project_root / "py_src"), str(tmp_path / "cases.json")],
                         cwd=project_root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert reply["platform"] == "emscripten"
    in_pyodide = reply["answers"]
    on_cpython = json.loads(json.dumps([run_case(c) for c in cases]))  # through JSON, as Pyodide's answers came
    assert len(in_pyodide) == len(cases)
    for case, browser, native in zip(cases, in_pyodide, on_cpython):
        assert browser == native, (case["query"], case["read"])
    assert in_pyodide[-1]["error"].startswith("event table 'clicks' has no column 'nope'")
    assert sum(1 for a in in_pyodide if a.get("ok") not in (None, [], 0)) > 250  # most cases answer something
