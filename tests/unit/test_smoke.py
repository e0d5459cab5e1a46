"""The smoke check a new version passes before it becomes active, on the native host."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from waystation.bundles.builder import build_bundle
from waystation.device import App, SmokeCheckError
from waystation.device.smoke import sample_feeds, smoke_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return build_bundle(ROOT / "models" / "digits", tmp_path_factory.mktemp("bundles"), progress=lambda _m: None)


def variant(digits: Path, tmp_path: Path, change) -> Path:
    """A copy of the built digits bundle with its manifest changed (unsigned: App.open checks files only)."""
    folder = shutil.copytree(digits, tmp_path / "variant")
    data = json.loads((folder / "manifest.json").read_text())
    data.pop("signature", None)
    change(data["models"]["classifier"])
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def check(folder: Path) -> dict:
    async def run() -> dict:
        app = await App.open(folder)
        try:
            return await smoke_check(app)
        finally:
            app.close()

    return asyncio.run(run())


def test_digits_answers_its_declared_sample_within_its_schema(digits):
    manifest = json.loads((digits / "manifest.json").read_text())
    assert manifest["models"]["classifier"]["sample"] == {"pixels": {"dtype": "float32", "shape": [1, 64], "fill": 0}}
    report = check(digits)
    assert report["classifier"]["outputs"] == {"label": [1], "probabilities": [1, 10]}


def test_without_a_declared_sample_the_input_schema_gives_one(digits, tmp_path):
    folder = variant(digits, tmp_path, lambda model: model.pop("sample"))
    assert check(folder)["classifier"]["outputs"] == {"label": [1], "probabilities": [1, 10]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["sample"]["pixels"].update(shape=[1, 63]),
         "model 'classifier' does not answer its sample input: model 'classifier' input 'pixels' takes shape"),
        (lambda m: m["sample"]["pixels"].update(dtype="int64"), "input 'pixels' takes float32, got int64"),
        (lambda m: m.update(sample={"image": {"dtype": "float32", "shape": [1, 64], "fill": 0}}), "has no input 'image'"),
        (lambda m: m["outputs"][1].update(dtype="float64"), "output 'probabilities' is float32, its schema says float64"),
        (lambda m: m["outputs"][1].update(shape=["?", 12]),
         r"output 'probabilities' has shape \[1, 10\], its schema says \['\?', 12\]"),
        (lambda m: m["outputs"].append({"name": "logits", "dtype": "float32", "shape": ["?", 10]}),
         "model 'classifier' output 'logits' is missing from its answer to the sample input"),
    ],
)
def test_a_model_outside_its_schema_fails_its_smoke_check(digits, tmp_path, change, message):
    folder = variant(digits, tmp_path, change)
    with pytest.raises(SmokeCheckError, match=message):
        check(folder)


def test_sample_feeds_fill_every_element(digits):
    from waystation.device import Manifest

    entry = Manifest.from_json((digits / "manifest.json").read_bytes()).models["classifier"]
    (name, tensor), = sample_feeds(entry).items()
    assert (name, tensor.dtype, tensor.shape, set(tensor.tolist()[0])) == ("pixels", "float32", (1, 64), {0.0})
