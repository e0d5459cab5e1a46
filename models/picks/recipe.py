"""The picks bundle's one graph: scores of every item against the user's mean click embedding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

OPSET = 17
DIM = 384  # all-MiniLM-L6-v2's embedding size (models/minilm)


def build(out_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Transpose", ["items"], ["items_t"], perm=[1, 0], name="items_t"),
        helper.make_node("MatMul", ["user", "items_t"], ["scores"], name="scores"),
    ]
    graph = helper.make_graph(
        nodes,
        "picks_scorer",
        inputs=[
            helper.make_tensor_value_info("user", TensorProto.FLOAT, [1, DIM]),
            helper.make_tensor_value_info("items", TensorProto.FLOAT, ["N", DIM]),
        ],
        outputs=[helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="waystation")
    model.ir_version = 8  # onnx 1.23 writes 14 by default, which onnxruntime 1.30/1.31 refuse
    onnx.checker.check_model(model, full_check=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scorer.onnx"
    path.write_bytes(model.SerializeToString())
    if progress:
        progress("picks: scorer.onnx")
    return {"scorer": path}
