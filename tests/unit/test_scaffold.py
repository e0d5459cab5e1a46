"""`waystation new NAME`: the bundle it writes builds, runs and passes its own test, as it is."""

import json
import secrets
import subprocess
import sys

import pytest
from tiny_bundle import error_line, waystation

from waystation.device import Manifest


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory):
    """A fresh bundle (fresh name: `waystation run` caches builds by name) made by `waystation new`."""
    parent = tmp_path_factory.mktemp("new")
    name = f"hello_{secrets.token_hex(3)}"
    out = waystation("new", name, "--dir", parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(parent / name)
    return parent / name


def test_new_writes_a_bundle_source_with_a_test(scaffold):
    assert sorted(p.name for p in scaffold.iterdir()) == sorted(
        ["bundle.toml", "recipe.py", "workflow.py", f"test_{scaffold.name}.py"])
    assert f'name = "{scaffold.name}"' in (scaffold / "bundle.toml").read_text()


def test_it_builds_signed_with_its_model_checked(scaffold, tmp_path):
    out = waystation("bundle", "build", scaffold, "--out", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "out" / scaffold.name / "0.1.0"
    assert out.stdout.strip() == str(folder)
    assert f"smoke check of {scaffold.name} 0.1.0 passed (scorer " in out.stderr
    manifest = Manifest.from_json((folder / "manifest.json").read_bytes())
    assert manifest.signature is not None
    assert manifest.models["scorer"].inputs == [{"name": "x", "dtype": "float32", "shape": ["N", 4]}]
    assert sorted(manifest.files) == ["scorer.onnx", "workflow.py"]


def test_it_runs(scaffold):
    out = waystation("run", scaffold, "score", "--args", '{"rows": [[1, 0, 0, 0], [0, 2, 0, 0]]}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"label": 0, "scores": [1.5, -0.5]}, {"label": 1, "scores": [0.5, 1.5]}]


def test_its_own_test_passes(scaffold):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", scaffold.name],
                         capture_output=True, text=True, cwd=scaffold.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_new_never_writes_over_a_folder(scaffold):
    before = (scaffold / "workflow.py").read_text()
    out = waystation("new", scaffold.name, "--dir", scaffold.parent)
    assert out.returncode == 1
    assert error_line(out) == f"{scaffold} already exists: `waystation new` never writes over files"
    assert (scaffold / "workflow.py").read_text() == before


@pytest.mark.parametrize("name", ["Hello", "1st", "my-bundle", "../up"])
def test_new_refuses_a_name_unfit_for_a_folder_url_and_test(tmp_path, name):
    out = waystation("new", name, "--dir", tmp_path)
    assert out.returncode == 1
    assert error_line(out).startswith(f"bundle name {name!r} must be lower-case letters, digits and '_'")
    assert list(tmp_path.iterdir()) == []
