"""The digits bundle on the native host: build, verify, call, and fail clearly."""

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from waystation.bundles.builder import build_bundle
from waystation.device import App, ArgumentError, BundleError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(ROOT / "models" / "digits", tmp_path_factory.mktemp("bundles"), progress=lambda _m: None)


@pytest.fixture(scope="module")
def app(bundle):
    app = asyncio.run(App.open(bundle))
    yield app
    app.close()


def call(app, name, args=None):
    return asyncio.run(app.call(name, args))["result"]


def test_manifest_lists_models_with_their_schema(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["models"]["classifier"]
    assert model["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": ["?", 64]}]
    assert [o["name"] for o in model["outputs"]] == ["label", "probabilities"]
    for entry in manifest["files"]:
        data = (bundle / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])


def test_rebuild_gives_the_same_bytes(bundle, tmp_path):
    again = build_bundle(ROOT / "models" / "digits", tmp_path, progress=lambda _m: None)
    assert (again / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()


def test_held_out_samples_are_classified(app):
    samples = call(app, "samples")
    results = call(app, "classify_features", {"features": [s["pixels"] for s in samples]})
    correct = sum(r["digit"] == s["label"] for r, s in zip(results, samples))
    assert correct >= 0.9 * len(samples)
    top = results[0]["top"]
    assert len(top) == 3 and top[0]["p"] >= top[1]["p"] >= top[2]["p"]


def test_drawing_is_preprocessed_to_dataset_features(app):
    sample = call(app, "samples")[6]
    size = 40  # an 8x8 sample drawn 5x larger, with a blank margin, ink in [0, 1]
    grid = [[sample["pixels"][((y - 4) // 4) * 8 + (x - 4) // 4] / 16 if 4 <= x < 36 and 4 <= y < 36 else 0.0
             for x in range(size)] for y in range(size)]
    result = call(app, "classify", {"pixels": [v for row in grid for v in row], "width": size, "height": size})
    assert len(result["features"]) == 64 and max(result["features"]) <= 16
    assert result["digit"] == sample["label"]


def test_metrics_and_timing_come_back(app):
    reply = asyncio.run(app.call("classify_features", {"features": [[0.0] * 64]}))
    assert reply["ms"] > 0 and reply["metrics"]["model_ms"] > 0


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"pixels": [0.0] * 10, "width": 4, "height": 4}, ValueError, "pixels has 10 values, but width x height is 16"),
        ({"pixels": [0.0] * 16, "width": 4, "height": 4}, ValueError, "the image is blank"),
        ({"pixels": "ink", "width": 1, "height": 3}, ArgumentError, r"^classify\(\): pixels: expected list\[float\], got str$"),
    ],
)
def test_bad_drawings_get_clear_errors(app, args, error, message):
    with pytest.raises(error, match=message):
        call(app, "classify", args)


def test_tampered_file_is_refused(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "copy")
    (copy / "classifier.onnx").write_bytes((copy / "classifier.onnx").read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match=re.escape("'classifier.onnx' does not match its sha256")):
        asyncio.run(App.open(copy))


def test_cli_run_prints_the_same_json(bundle, app):
    features = [call(app, "samples")[0]["pixels"]]
    out = subprocess.run(
        [sys.executable, "-m", "waystation", "run", str(bundle), "classify_features",
         "--args", json.dumps({"features": features})],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout) == call(app, "classify_features", {"features": features})


def test_cli_run_reports_errors_on_one_line(bundle):
    out = subprocess.run(
        [sys.executable, "-m", "waystation", "run", str(bundle), "classify", "--args", '{"pixels": [1]}'],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: invalid-argument: classify(): missing a required argument: 'width'"
