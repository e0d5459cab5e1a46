"""The device package in real Pyodide under Node, on onnxruntime-web: same answers as CPython."""

import asyncio
import json
import math
import subprocess
from pathlib import Path

import pytest

from waystation.device import App

HERE = Path(__file__).parent
CHECKS = HERE / "device_checks.py"
NAMES = [line.split("(")[0][len("async def "):] for line in CHECKS.read_text().splitlines()
         if line.startswith("async def check_")]


@pytest.fixture(scope="module")
def digits(site_dir: Path) -> Path:
    return site_dir / "bundles" / "digits" / "1.0.0"


@pytest.fixture(scope="module")
def pyodide_results(site_dir: Path, digits: Path, project_root: Path) -> dict:
    out = subprocess.run(
        ["node", str(HERE / "harness.mjs"), str(site_dir), str(digits), str(CHECKS)],
        cwd=project_root, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def native(digits: Path):
    app = asyncio.run(App.open(digits))
    yield app
    app.close()


def test_every_check_ran_in_pyodide(pyodide_results):
    assert NAMES and sorted(pyodide_results) == sorted(NAMES)  # none missed by the parametrisation below


@pytest.mark.parametrize("name", NAMES)
def test_check_passes_in_pyodide(pyodide_results, name):
    result = pyodide_results[name]
    assert result["ok"], result.get("error")


def test_workflow_answers_match_cpython(pyodide_results, native):
    browser = pyodide_results["check_classify_samples"]["value"]
    cpython = asyncio.run(native.call("classify_features", {"features": browser["features"]}))["result"]
    assert browser["results"] and [r["digit"] for r in browser["results"]] == [r["digit"] for r in cpython]
    for b, c in zip(browser["results"], cpython, strict=True):
        assert [t["digit"] for t in b["top"]] == [t["digit"] for t in c["top"]]
        assert all(math.isclose(x["p"], y["p"], abs_tol=1e-5) for x, y in zip(b["top"], c["top"]))


def test_model_outputs_match_cpython_within_1e_5(pyodide_results, native):
    import numpy as np

    features = pyodide_results["check_classify_samples"]["value"]["features"]
    x = np.asarray(features, dtype=np.float32)
    from waystation.device import Tensor

    cpython = asyncio.run(native.models["classifier"].run({"pixels": Tensor("float32", x)}))["probabilities"]
    browser = np.asarray(pyodide_results["check_raw_model_outputs"]["value"], dtype=np.float32)
    np.testing.assert_allclose(browser, np.asarray(cpython), atol=1e-5)


def test_model_schema_matches_cpython(pyodide_results, native):
    assert pyodide_results["check_model_schema_from_onnxruntime_web"]["value"] == native.models["classifier"].describe()
