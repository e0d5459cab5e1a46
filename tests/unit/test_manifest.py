import json

import pytest

from waystation.device import BundleError, Manifest

GOOD = {
    "format": 1,
    "name": "demo",
    "version": "1.2.3",
    "runtime": "0.1.0",
    "workflow": "workflow.py",
    "files": [
        {"path": "workflow.py", "size": 10, "sha256": "a" * 64},
        {"path": "models/m.onnx", "size": 20, "sha256": "b" * 64},
    ],
    "models": {"m": {"file": "models/m.onnx", "opset": 17, "inputs": [], "outputs": []}},
}


def test_round_trip():
    manifest = Manifest.from_json(json.dumps(GOOD))
    assert manifest.models["m"].file == "models/m.onnx"
    assert Manifest.from_dict(manifest.to_dict()) == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 99}, "format 99 is not supported"),
        ({"version": "1.2"}, "not semver"),
        ({"name": None}, "'name' must be a str"),
        ({"workflow": "other.py"}, "workflow 'other.py' is not among its files"),
        ({"files": [{"path": "../etc/passwd", "size": 1, "sha256": "a" * 64}]}, "not a safe relative path"),
        ({"files": [{"path": "workflow.py", "size": -1, "sha256": "a" * 64}]}, "no valid size"),
        ({"files": [{"path": "workflow.py", "size": 1, "sha256": "xyz"}]}, "no valid sha256"),
        ({"models": {"m": {"file": "missing.onnx"}}}, "model 'm' must name one of the bundle's files"),
    ],
)
def test_malformed_manifest_names_the_field(change, message):
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict({**GOOD, **change})


def test_not_json():
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.from_json("{nope")
