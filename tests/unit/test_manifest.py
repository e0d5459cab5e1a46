import json

import pytest

from waystation.device import BundleError, Manifest
from waystation.device.manifest import canonical_json

A, B, C = "a" * 64, "b" * 64, "c" * 64
GOOD = {
    "format": 2,
    "name": "demo",
    "version": "1.2.3",
    "parent": "1.2.0",
    "runtime": "0.1.0",
    "description": "a démo",
    "workflow": "workflow.py",
    "files": [
        {"path": "workflow.py", "size": 10, "sha256": A, "chunks": [[A, 10]]},
        {"path": "models/m.onnx", "size": 20, "sha256": B, "chunks": [[B, 12], [C, 8]]},
    ],
    "models": {"m": {"file": "models/m.onnx", "opset": 17, "inputs": [], "outputs": []}},
    "signature": {"alg": "Ed25519", "key": "0123456789abcdef", "value": "A" * 86 + "=="},
}


def with_file(**change):
    return {"files": [{**GOOD["files"][0], **change}]}


def test_round_trip():
    manifest = Manifest.from_json(json.dumps(GOOD))
    assert manifest.models["m"].file == "models/m.onnx"
    assert manifest.parent == "1.2.0" and manifest.signature.key == "0123456789abcdef"
    assert manifest.files["models/m.onnx"].chunks == ((B, 12), (C, 8))
    assert manifest.chunks() == {A: 10, B: 12, C: 8}
    assert manifest.to_dict() == GOOD
    assert Manifest.from_dict(manifest.to_dict()) == manifest


def test_first_version_has_null_parent_and_may_be_unsigned():
    data = {k: v for k, v in GOOD.items() if k != "signature"} | {"parent": None}
    manifest = Manifest.from_dict(data)
    assert manifest.parent is None and manifest.signature is None


def test_payload_is_the_canonical_json_without_the_signature():
    manifest = Manifest.from_dict(GOOD)
    assert b"signature" not in manifest.payload
    assert manifest.payload.startswith(b'{"description":"a d\xc3\xa9mo","files":[{"chunks":[["aaaa')
    assert json.loads(manifest.payload) == {k: v for k, v in GOOD.items() if k != "signature"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 1}, "format 1 is not supported"),
        ({"version": "1.2"}, "version '1.2' is not semver"),
        ({"name": None}, "'name' must be a str"),
        ({"runtime": 1}, "'runtime' must be a str"),
        ({"runtime": "latest"}, "runtime 'latest' is not semver"),
        ({"parent": "1.3.0"}, "parent '1.3.0' must be an earlier version than '1.2.3'"),
        ({"parent": "1.2.3"}, "parent '1.2.3' must be an earlier version"),
        ({"parent": "x"}, "parent 'x' is not semver"),
        ({"description": 3}, "'description' must be a str"),
        ({"workflow": "other.py"}, "workflow 'other.py' is not among its files"),
        (with_file(path="../etc/passwd"), "not a safe relative path"),
        (with_file(size=-1), "'workflow.py' has no valid size"),
        (with_file(sha256="xyz"), "'workflow.py' has no valid sha256"),
        (with_file(chunks=None), "'workflow.py' has no 'chunks' list"),
        (with_file(chunks=[["nothex", 10]]), r"chunk \['nothex', 10\] is not \[sha256 hex, size > 0\]"),
        (with_file(chunks=[[A, 0], [A, 10]]), "is not \\[sha256 hex, size > 0\\]"),
        (with_file(chunks=[[A]]), "is not \\[sha256 hex, size > 0\\]"),
        (with_file(chunks=[[A, 4], [B, 4]]), "its chunks add up to 8 bytes, not its size 10"),
        ({"files": GOOD["files"] + GOOD["files"][:1]}, "lists file 'workflow.py' twice"),
        ({"models": {"m": {"file": "missing.onnx"}}}, "model 'm' must name one of the bundle's files"),
        ({"signature": "sig"}, "'signature' must be an object with exactly 'alg', 'key' and 'value'"),
        ({"signature": {**GOOD["signature"], "alg": "RSA"}}, "signature alg 'RSA' is not supported"),
        ({"signature": {**GOOD["signature"], "key": "ABC"}}, "signature key 'ABC' is not a key id"),
        ({"signature": {**GOOD["signature"], "value": "AAAA"}}, "not the base64 of a 64-byte Ed25519 signature"),
        ({"signature": {**GOOD["signature"], "value": "!" * 88}}, "not the base64 of a 64-byte"),
        ({"extra": 0.5}, r"manifest.extra: 0.5 is a float"),
        ({"models": {"m": {**GOOD["models"]["m"], "opset": 17.0}}}, r"manifest.models.m.opset: 17.0 is a float"),
        ({"models": {"10": GOOD["models"]["m"]}}, "key '10' must match"),
        ({"extra": {"clé": 1}}, "key 'clé' must match"),
        ({"extra": 2**53}, "beyond what JavaScript holds exactly"),
        ({"extra": "\ud800"}, "not valid Unicode"),
    ],
)
def test_malformed_manifest_names_the_field(change, message):
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict({**GOOD, **change})


def test_missing_fields_are_named():
    for key in ("name", "version", "parent", "runtime", "workflow", "files", "models"):
        with pytest.raises(BundleError, match=f"no '{key}' field"):
            Manifest.from_dict({k: v for k, v in GOOD.items() if k != key})


def test_not_json():
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.from_json("{nope")


def test_canonical_json_is_what_json_stringify_of_a_key_sorted_copy_gives():
    # The JS side (JSON.stringify of an object with keys inserted in sorted order) prints
    # exactly these bytes for these values: no spaces, raw non-ASCII, \u00XX for controls.
    value = {"b": [1, -2, True, None], "a": {"z": "é\n\x1f\"\\", "Y": "😀"}, "_": 9007199254740991}
    assert canonical_json(value) == (
        '{"_":9007199254740991,"a":{"Y":"😀","z":"é\\n\\u001f\\"\\\\"},"b":[1,-2,true,null]}'.encode()
    )


SAMPLE = {"x": {"dtype": "float32", "shape": [1, 3], "fill": 0}}


def test_a_model_may_declare_its_smoke_check_sample():
    data = {**GOOD, "models": {"m": {**GOOD["models"]["m"], "sample": SAMPLE}}}
    manifest = Manifest.from_dict(data)
    assert manifest.models["m"].sample == SAMPLE
    assert manifest.to_dict() == data
    manifest = Manifest.from_dict(GOOD)
    assert manifest.models["m"].sample is None and "sample" not in manifest.to_dict()["models"]["m"]


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({}, "sample must map input names to"),
        ({"x": {"dtype": "float32", "shape": [1]}}, "sample 'x' must have exactly 'dtype', 'shape' and 'fill'"),
        ({"x": {**SAMPLE["x"], "dtype": 1}}, "dtype must be a string"),
        ({"x": {**SAMPLE["x"], "shape": ["?", 3]}}, r"shape must be a list of sizes \(integers >= 0\), got \['\?', 3\]"),
        ({"x": {**SAMPLE["x"], "fill": 0.5}}, r"sample.x.fill: 0.5 is a float"),
        ({"x": {**SAMPLE["x"], "fill": True}}, "fill must be an integer"),
    ],
)
def test_a_malformed_sample_is_named(sample, message):
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict({**GOOD, "models": {"m": {**GOOD["models"]["m"], "sample": sample}}})
