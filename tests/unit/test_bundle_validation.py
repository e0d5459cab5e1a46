"""`waystation bundle build` catches a new bundle's mistakes before anything is signed or written.

Each test writes a small bundle source (an ONNX graph made with onnx's helper API, a workflow
script, a bundle.toml) into tmp_path, breaks one thing, and asserts the error text, in-process
and, where the command line's one-line report matters, through `python -m waystation`.
"""

import json
from pathlib import Path

import onnx
import pytest
from tiny_bundle import error_line, waystation, write_model, write_source

from waystation.bundles.builder import build_bundle
from waystation.bundles.source import BundleSource
from waystation.bundles.validate import InvalidBundleError, Lines
from waystation.device.errors import BundleError


@pytest.fixture
def source(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    return write_source(folder)


def edit(folder: Path, old: str, new: str, name: str = "bundle.toml") -> Path:
    text = (folder / name).read_text()
    assert old in text, f"{old!r} not in {name}"
    (folder / name).write_text(text.replace(old, new))
    return folder / name


def build_error(source: Path, out: Path) -> str:
    with pytest.raises(BundleError) as caught:
        build_bundle(source, out, progress=lambda _m: None)
    assert not (out / "tiny").exists() and not (out / "chunks").exists()  # nothing built, nothing signed
    return str(caught.value)


def test_the_tiny_bundle_builds_and_runs(source, tmp_path):
    folder = build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    assert json.loads((folder / "manifest.json").read_text())["models"]["twice"]["inputs"][0]["name"] == "x"
    out = waystation("run", folder, "double", "--args", '{"values": [1, 2.5]}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [2.0, 5.0]


def test_a_misspelt_model_key_names_file_line_key_and_the_right_spelling(source, tmp_path):
    toml = edit(source, 'file = "twice.onnx"', 'fil = "twice.onnx"')
    message = build_error(source, tmp_path / "out")
    assert f"{toml}:7: [models.twice] unknown key 'fil'; did you mean 'file'?" in message
    assert f"{toml}:6: [models.twice] missing required key 'file'" in message
    assert message.startswith(f"{toml} has 2 problems:\n")


def test_a_misspelt_table_is_an_error_not_a_bundle_without_models(source, tmp_path):
    toml = edit(source, "[models.twice]", "[model.twice]")
    message = build_error(source, tmp_path / "out")
    assert message.startswith(f"{toml}:6: unknown table [model]; did you mean [models]?")


def test_missing_keys_say_missing_and_wrong_types_say_the_type(source, tmp_path):
    toml = edit(source, 'name = "tiny"\n', "")
    edit(source, 'description = "two times x"', "description = 2")
    edit(source, "fill = 1 }", 'fill = "1" }')
    with pytest.raises(InvalidBundleError) as caught:
        BundleSource.load(source)
    problems = [str(p) for p in caught.value.problems]
    assert problems == [
        f"{toml}: missing required key 'name'",
        f"{toml}:2: 'description' must be a string, got an integer (2)",
        f"{toml}:7: [models.twice.sample.x] 'fill' must be an integer, got a string ('1')",
    ]


def test_every_problem_of_the_file_is_reported_at_once(source, tmp_path):
    toml = edit(source, 'version = "1.0.0"', 'version = "1.0"\nparnet = "0.9.0"')
    edit(source, 'dtype = "float32"', 'dtype = "flaot32"')
    edit(source, 'workflow = "workflow.py"', 'workflow = "worklfow.py"\nfiles = ["../secrets.txt"]')
    edit(source, "[models.twice]", '[events.clicks]\nfields = { item_id = "str" }\nretention = { day = 7 }\n\n[models.twice]')
    with pytest.raises(InvalidBundleError) as caught:
        BundleSource.load(source)
    error = caught.value
    assert str(error).splitlines() == [
        f"{toml} has 6 problems:",
        f"  {toml}:2: version '1.0' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)",
        f"  {toml}:3: unknown key 'parnet'; did you mean 'parent'? (known: name, version, workflow, description, "
        "parent, recipe, files, models, variants, events, features, telemetry)",
        f"  {toml}:5: workflow 'worklfow.py' does not exist in {source}; did you mean 'workflow.py'?",
        f"  {toml}:6: files[0] '../secrets.txt' is not a safe relative path (letters, digits, '_', '.', '-', '/')",
        f"  {toml}:10: [events.clicks.retention] unknown key 'day'; did you mean 'days'? "
        "(known: days, hours, minutes, seconds, rows)",
        f"  {toml}:14: [models.twice] sample input 'x': dtype 'flaot32' is not one of bool, float16, float32, "
        "float64, int16, int32, int64, int8, uint16, uint32, uint64, uint8; did you mean 'float32'?",
    ]
    assert [p.line for p in error.problems] == [2, 3, 5, 6, 10, 14]


def test_a_workflow_syntax_error_is_one_line_with_file_and_line(source, tmp_path):
    workflow = edit(source, "    return out", "    return out[", "workflow.py")
    out = waystation("bundle", "build", source, "--out", tmp_path / "out")
    assert out.returncode == 1
    assert error_line(out) == f"{workflow}:7: SyntaxError: '[' was never closed"
    assert not (tmp_path / "out" / "tiny").exists()


def test_a_workflow_import_error_names_its_line(source, tmp_path):
    workflow = edit(source, "from waystation.device import Tensor, export\n",
                    "from waystation.device import Tensor, export\nimport numpyy\n", "workflow.py")
    assert build_error(source, tmp_path / "out") == (
        f"{workflow}:2: ModuleNotFoundError: No module named 'numpyy' (while importing it)")


@pytest.mark.parametrize(("script", "message"), [
    ("def double(ctx):\n    return 1\n",
     "exports no function: mark the functions a page may call with @export (from waystation.device import export)"),
    ("from waystation.device import export\n\n@export\ndef double():\n    return 1\n",
     "3: exported function 'double' must take the call's context first: def double(ctx, ...)"),
    ("from waystation.device import export\n\n@export\ndef a(ctx):\n    return 1\n\n"
     "@export(name='a')\ndef b(ctx):\n    return 2\n",
     "7: two functions are exported as 'a': a and b"),
    ("from waystation.device import export\n\n@export\ndef a(ctx, x: 'Pixels'):\n    return 1\n",
     "3: exported function 'a': its annotations cannot be resolved (NameError: name 'Pixels' is not defined)"),
])
def test_malformed_exports_are_named(source, tmp_path, script, message):
    (source / "workflow.py").write_text(script)
    error = build_error(source, tmp_path / "out")
    workflow = source / "workflow.py"
    assert error.startswith(f"{workflow}:{message}" if message[0].isdigit() else f"{workflow}: {message}")


def test_a_file_that_is_not_onnx_is_named(source, tmp_path):
    (source / "twice.onnx").write_text("this is a text file, not a model\n")
    message = build_error(source, tmp_path / "out")
    assert message.startswith(f"{source / 'twice.onnx'}: twice.onnx is not an ONNX model")
    assert "DecodeError" not in message.split(" (")[0]


def test_an_onnx_model_the_checker_refuses_is_named(source, tmp_path):
    model = onnx.load(str(source / "twice.onnx"))
    model.graph.node[0].input[1] = "nowhere"  # an input no node or graph input makes
    (source / "twice.onnx").write_bytes(model.SerializeToString())
    message = build_error(source, tmp_path / "out")
    assert message.startswith(f"{source / 'twice.onnx'}: twice.onnx is not a valid ONNX model:")
    assert "nowhere" in message


@pytest.mark.parametrize(("old", "new", "message"), [
    ("x = { dtype", "xs = { dtype", "the model has no input 'xs' (did you mean 'x'?); its inputs: x float32 [1, N]"),
    ('dtype = "float32"', 'dtype = "int64"', "input 'x' is int64, the model takes float32"),
    ("shape = [1, 3]", "shape = [3]", "input 'x' has shape [3], the model takes [1, N]"),
    ("shape = [1, 3]", "shape = [2, 3]", "input 'x' has shape [2, 3], the model takes [1, N]"),
])
def test_a_sample_that_does_not_fit_the_model_is_named(source, tmp_path, old, new, message):
    toml = edit(source, old, new)
    assert f"{toml}:8: [models.twice] sample: {message}" in build_error(source, tmp_path / "out")


def test_a_sample_missing_an_input_is_named(source, tmp_path):
    toml = edit(source, "sample = { x = {", "sample = { z = {")
    message = build_error(source, tmp_path / "out")
    assert f"{toml}:8: [models.twice] sample: the model has no input 'z'" in message
    assert f"{toml}:8: [models.twice] sample: input 'x' (float32 [1, N]) is missing" in message


def test_a_model_failing_its_smoke_check_is_never_signed(source, tmp_path):
    write_model(source / "twice.onnx", op="Log")
    edit(source, "fill = 1", "fill = 0")  # log(0) = -inf
    out = waystation("bundle", "build", source, "--out", tmp_path / "out")
    assert out.returncode == 1
    assert error_line(out) == (
        "model 'twice' output 'y' holds NaN or infinity for the sample input")
    assert not (tmp_path / "out" / "tiny").exists() and not (tmp_path / "out" / "chunks").exists()


def test_a_rebuilt_version_with_other_content_is_refused_unless_forced(source, tmp_path):
    out = tmp_path / "out"
    first = build_bundle(source, out, progress=lambda _m: None)
    before = (first / "manifest.json").read_bytes()
    assert build_bundle(source, out, progress=lambda _m: None) == first  # the same content: fine
    assert (first / "manifest.json").read_bytes() == before
    edit(source, "return out", "return  out", "workflow.py")
    refused = waystation("bundle", "build", source, "--out", out)
    assert refused.returncode == 1
    assert error_line(refused) == (
        f"{first} already holds tiny 1.0.0 built from other content (changed: workflow.py): "
        f"a version never changes once built. Bump 'version' in {source / 'bundle.toml'}, "
        "or pass --force to replace a build that was never published")
    assert (first / "manifest.json").read_bytes() == before
    forced = waystation("bundle", "build", source, "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (first / "manifest.json").read_bytes() != before
    assert "return  out" in (first / "workflow.py").read_text()


def test_lines_finds_keys_tables_and_inline_tables():
    lines = Lines('a = 1\n\n[models.m]\nfile = "x"\nsample = { x = { dtype = "f" } }\n\n[variants.v]\nmodels.m.file = "y"\n')
    assert lines.find(("a",)) == 1
    assert lines.find(("models",)) == 3 and lines.find(("models", "m")) == 3
    assert lines.find(("models", "m", "file")) == 4
    assert lines.find(("models", "m", "sample", "x", "dtype")) == 5  # inside an inline table: its key's line
    assert lines.find(("models", "m", "layout")) == 3  # absent: its table's line
    assert lines.find(("variants", "v", "models", "m", "file")) == 8
    assert lines.find(("nothing",)) is None


def test_a_file_may_come_from_the_recipe_and_a_missing_one_is_named(source, tmp_path):
    workflow = (source / "workflow.py").read_text()
    (source / "workflow.py").unlink()
    recipe = f"def build(out_dir, progress=None):\n    (out_dir / 'workflow.py').write_text({workflow!r})\n"
    (source / "recipe.py").write_text(recipe)
    toml = edit(source, 'workflow = "workflow.py"', 'workflow = "workflow.py"\nrecipe = "recipe.py"\nfiles = ["labels.json"]')
    assert build_error(source, tmp_path / "out") == (
        f"{toml}:6: 'labels.json' is neither made by the recipe nor in {source}")
    (source / "labels.json").write_text("[]")
    folder = build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    assert (folder / "workflow.py").read_text() == workflow


def test_a_recipe_that_does_not_import_is_named_with_its_line(source, tmp_path):
    (source / "recipe.py").write_text("import onnx\n\ndef build(out_dir, progress=None)\n    pass\n")
    edit(source, 'workflow = "workflow.py"', 'workflow = "workflow.py"\nrecipe = "recipe.py"')
    assert build_error(source, tmp_path / "out") == (
        f"{source / 'recipe.py'}:3: SyntaxError: expected ':' (while importing the recipe)")
