"""gpu-mlp: a small bundle source that offers WebGPU (bundle.toml `execution = ["webgpu", "wasm"]`).

Its model, x [N, 64] -> MatMul, Add, Relu -> MatMul -> Softmax -> probabilities [N, 10], has
fixed pseudo-random weights and only operators both onnxruntime-web builds have, so it runs on
WebGPU and on WASM alike (tests/e2e/test_webgpu.py, bench/webgpu.py).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_source"]

BUNDLE_TOML = """\
name = "gpu-mlp"
version = "1.0.0"
description = "A small MLP that offers WebGPU"
workflow = "workflow.py"
recipe = "recipe.py"

[models.mlp]
file = "mlp.onnx"
execution = ["webgpu", "wasm"]
sample = { x = { dtype = "float32", shape = [1, 64], fill = 1 } }
"""

RECIPE = '''\
"""x [N, 64] -> MatMul, Add, Relu -> MatMul -> Softmax -> probabilities [N, 10]: fixed pseudo-random weights."""

import random


def build(out_dir, progress=None):
    import onnx
    from onnx import TensorProto, helper

    rng = random.Random(7)
    def tensor(name, dims):
        size = 1
        for d in dims:
            size *= d
        return helper.make_tensor(name, TensorProto.FLOAT, dims, [rng.uniform(-1, 1) for _ in range(size)])

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
         helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "mlp",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[tensor("W1", [64, 128]), tensor("b1", [128]), tensor("W2", [128, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "mlp.onnx"
    path.write_bytes(model.SerializeToString())
    return {"mlp": path}
'''

WORKFLOW = '''\
from waystation.device import Tensor, export


@export
async def probabilities(ctx, rows: list[list[float]]) -> Tensor:
    flat = [float(v) for row in rows for v in row]
    out = await ctx.models["mlp"].run({"x": Tensor("float32", flat, (len(rows), 64))})
    return out["probabilities"]
'''


def write_source(folder: Path) -> Path:
    """bundle.toml, recipe.py and workflow.py of gpu-mlp in `folder` (made)."""
    folder.mkdir(parents=True)
    (folder / "bundle.toml").write_text(BUNDLE_TOML)
    (folder / "recipe.py").write_text(RECIPE)
    (folder / "workflow.py").write_text(WORKFLOW)
    return folder
