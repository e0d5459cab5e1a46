"""`waystation new NAME`: a bundle source that builds and runs as it is, to start a bundle from.

    new_bundle("scores", Path("models"))   # models/scores/{bundle.toml, recipe.py, workflow.py, test_scores.py}

The recipe makes a tiny ONNX graph (scores = x @ W + b, fixed weights) with the onnx package's
helper API, so nothing is trained and nothing is downloaded; the workflow exports one function;
the test calls it the way `waystation run` does.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..device.errors import BundleError

__all__ = ["new_bundle"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # a folder, a URL segment and part of a Python test's name

_TOML = '''# The {name} bundle. Every key is described in docs/bundles.md.
name = "{name}"
version = "0.1.0"
description = "A starting point: two scores per row of four numbers"
workflow = "workflow.py"
recipe = "recipe.py"

[models.scorer]
file = "scorer.onnx"   # made by recipe.py
# The smoke check's input: each new version must answer it within the model's output schema
# before it is signed here, and before it becomes active on a device.
sample = {{ x = {{ dtype = "float32", shape = [1, 4], fill = 1 }} }}
'''

_RECIPE = '''"""Make the {name} bundle's model: scores = x @ W + b, a [N, 4] -> [N, 2] graph with fixed weights.

`waystation bundle build` calls build(out_dir, progress) and takes the files it writes into
out_dir (here scorer.onnx); the same source gives the same bytes. Replace the weights with
your own (or convert a trained model) and keep the input and output names in step with
workflow.py and bundle.toml's sample.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

OPSET = 17
WEIGHTS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]]  # 4 inputs x 2 scores
BIAS = [0.5, -0.5]


def build(out_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("W", TensorProto.FLOAT, [4, 2], [v for row in WEIGHTS for v in row])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [2], BIAS)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["scores"])],
        "{name}_scorer",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        outputs=[helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="waystation")
    model.ir_version = 8  # what onnxruntime and onnxruntime-web read (onnx writes a newer one by default)
    onnx.checker.check_model(model, full_check=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scorer.onnx"
    path.write_bytes(model.SerializeToString())
    if progress:
        progress("{name}: scorer.onnx")
    return {{"scorer": path}}
'''

_WORKFLOW = '''"""The {name} workflow: runs in the page (Pyodide) and on CPython (`waystation run`) alike.

Exported functions take the call's context first, then JSON arguments checked against their
annotations. Device code uses the standard library only: heavy math belongs in the ONNX graph.
"""

from waystation.device import Tensor, export

WIDTH = 4


@export
async def score(ctx, rows: list[list[float]]) -> list[dict]:
    """Two scores per row of four numbers, and the index of the larger one."""
    for i, row in enumerate(rows):
        if len(row) != WIDTH:
            raise ValueError(f"rows[{{i}}] has {{len(row)}} values, expected {{WIDTH}}")
    flat = [float(v) for row in rows for v in row]
    out = await ctx.models["scorer"].run({{"x": Tensor("float32", flat, (len(rows), WIDTH))}})
    scores = out["scores"].tolist()
    return [{{"label": max(range(len(s)), key=s.__getitem__), "scores": s}} for s in scores]
'''

_TEST = '''"""The {name} bundle on CPython, called the way `waystation run` calls it (run it with pytest)."""

import asyncio
from pathlib import Path

import pytest

from waystation.cli import run_function

BUNDLE = Path(__file__).resolve().parent


def call(function: str, args: dict) -> object:
    return asyncio.run(run_function(BUNDLE, function, args))["result"]


def test_score_gives_two_scores_and_the_larger_ones_index():
    # x @ W + b by hand: [1, 0, 0, 0] -> [1.5, -0.5]; [0, 0, 0, 1] -> [-0.5, 1.5]
    assert call("score", {{"rows": [[1, 0, 0, 0], [0, 0, 0, 1]]}}) == [
        {{"label": 0, "scores": [1.5, -0.5]}},
        {{"label": 1, "scores": [-0.5, 1.5]}},
    ]


def test_a_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="rows\\\\[0\\\\] has 3 values, expected 4"):
        call("score", {{"rows": [[1, 2, 3]]}})
'''


def new_bundle(name: str, parent: Path) -> Path:
    """Write a new bundle source `parent/NAME/` and return it; BundleError if it exists or NAME is unfit."""
    if not _NAME.fullmatch(name):
        raise BundleError(f"bundle name {name!r} must be lower-case letters, digits and '_', starting with a letter "
                          "(at most 40): it names a folder, a URL and a Python test")
    folder = parent / name
    if folder.exists():
        raise BundleError(f"{folder} already exists: `waystation new` never writes over files")
    files = {
        "bundle.toml": _TOML,
        "recipe.py": _RECIPE,
        "workflow.py": _WORKFLOW,
        f"test_{name}.py": _TEST,
    }
    folder.mkdir(parents=True)
    for file, template in files.items():
        (folder / file).write_text(template.format(name=name), encoding="utf-8")
    return folder
