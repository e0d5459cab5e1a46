"""A tiny bundle source for build and publish tests: y = x + x, made with onnx's helper API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = '''from waystation.device import Tensor, export


@export
async def double(ctx, values: list[float]) -> list[float]:
    out = await ctx.models["twice"].run({"x": Tensor("float32", values, (1, len(values)))})
    return out["y"].tolist()[0]
'''
TOML = '''name = "tiny"
version = "1.0.0"
description = "two times x"
workflow = "workflow.py"

[models.twice]
file = "twice.onnx"
sample = { x = { dtype = "float32", shape = [1, 3], fill = 1 } }
'''


def write_model(path: Path, op: str = "Add") -> None:
    """y = x + x (or `op`(x) for a one-input op), x float32 [1, N]."""
    inputs = ["x", "x"] if op == "Add" else ["x"]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"])], "twice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what this onnxruntime reads
    path.write_bytes(model.SerializeToString())


def write_source(folder: Path) -> Path:
    """bundle.toml, workflow.py and twice.onnx in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bundle.toml").write_text(TOML)
    (folder / "workflow.py").write_text(WORKFLOW)
    write_model(folder / "twice.onnx")
    return folder


def waystation(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "waystation", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def error_line(out: subprocess.CompletedProcess) -> str:
    """The message of the command's one error line, `error: KIND: message`, without its prefix."""
    lines = out.stderr.strip().splitlines()
    assert re.match(r"error: [\w-]+: ", lines[-1]), out.stderr
    return re.sub(r"^error: [\w-]+: ", "", lines[-1])
