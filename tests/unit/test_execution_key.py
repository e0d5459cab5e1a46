"""bundle.toml's `[models.NAME] execution` (where a model may run on a device) reaches the manifest.

web/execution.js reads it from the manifest's model entry to offer WebGPU; a model without it
runs on WASM, and its manifest has no such field (the bytes of existing bundles do not change).
"""

import json
from pathlib import Path

import pytest
from tiny_bundle import write_source

from waystation.bundles.builder import build_bundle
from waystation.bundles.validate import InvalidBundleError
from waystation.device.errors import BundleError
from waystation.device.manifest import Manifest

MODEL_TABLE = '[models.twice]\nfile = "twice.onnx"\n'


@pytest.fixture
def source(tmp_path) -> Path:
    return write_source(tmp_path / "tiny")


def declare(source: Path, line: str) -> None:
    text = (source / "bundle.toml").read_text()
    assert MODEL_TABLE in text
    (source / "bundle.toml").write_text(text.replace(MODEL_TABLE, MODEL_TABLE + line + "\n"))


def built_manifest(source: Path, out: Path) -> dict:
    folder = build_bundle(source, out, progress=lambda _m: None)
    return json.loads((folder / "manifest.json").read_text())


def test_the_declared_execution_providers_reach_the_manifest_and_parse(source, tmp_path):
    declare(source, 'execution = ["webgpu", "wasm"]')
    data = built_manifest(source, tmp_path / "out")
    assert data["models"]["twice"]["execution"] == ["webgpu", "wasm"]
    parsed = Manifest.from_dict(data)
    assert parsed.models["twice"].execution == ["webgpu", "wasm"]
    assert parsed.to_dict()["models"]["twice"]["execution"] == ["webgpu", "wasm"]


def test_without_the_key_the_manifest_has_no_execution_field(source, tmp_path):
    data = built_manifest(source, tmp_path / "out")
    assert "execution" not in data["models"]["twice"]
    assert Manifest.from_dict(data).models["twice"].execution is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('execution = ["webgpu", "wasn"]',
         "[models.twice] execution 'wasn' must be one of 'webgpu', 'wasm'; did you mean 'wasm'?"),
        ('execution = ["webgpu"]', "[models.twice] execution ['webgpu'] must name each provider once and include 'wasm'"),
        ('execution = ["wasm", "wasm"]', "[models.twice] execution ['wasm', 'wasm'] must name each provider once"),
        ('execution = "webgpu"', "[models.twice] 'execution' must be a list of strings, got a string ('webgpu')"),
    ],
)
def test_a_wrong_execution_list_is_named_with_file_and_line(source, tmp_path, line, message):
    declare(source, line)
    with pytest.raises(InvalidBundleError) as caught:
        build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    assert str(caught.value).startswith(f"{source / 'bundle.toml'}:8: {message}")  # the one problem, at its line
    assert not (tmp_path / "out" / "tiny").exists()


@pytest.mark.parametrize("value", [[], ["cuda", "wasm"], ["wasm", "wasm"], "wasm"])
def test_the_manifest_parser_refuses_an_execution_it_does_not_know(source, tmp_path, value):
    data = built_manifest(source, tmp_path / "out")
    data["models"]["twice"]["execution"] = value
    refused = r"manifest model 'twice' execution must list each of \['webgpu', 'wasm'\] at most once"
    with pytest.raises(BundleError, match=refused):
        Manifest.from_dict(data)
