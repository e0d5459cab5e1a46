"""A small ONNX graph for the heavy math of search and tagging: cosine scores and top-k.

Embeddings are L2-normalised, so cosine similarity is a dot product:
    scores = queries @ index.T            [Q, N]
    values, indices = TopK(scores, min(k, N))
Python never loops over floats: it hands buffers to this graph and reads back k rows.
"""

from __future__ import annotations

from pathlib import Path

OPSET = 17


def build(path: Path, dim: int = 384) -> Path:
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Transpose", ["index"], ["index_t"], perm=[1, 0], name="index_t"),
        helper.make_node("Shape", ["index"], ["index_shape"], name="index_shape", start=0, end=1),
        helper.make_node("Min", ["k", "index_shape"], ["k_bounded"], name="k_bounded"),
        helper.make_node("MatMul", ["queries", "index_t"], ["scores"], name="scores"),
        helper.make_node("TopK", ["scores", "k_bounded"], ["values", "indices"], axis=-1, largest=1, sorted=1, name="topk"),
    ]
    graph = helper.make_graph(
        nodes,
        "similarity_topk",
        inputs=[
            helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["Q", dim]),
            helper.make_tensor_value_info("index", TensorProto.FLOAT, ["N", dim]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        outputs=[
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["Q", "K"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["Q", "K"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="waystation")
    model.ir_version = 8  # what opset 17 needs; onnx 1.23 defaults to 14, which ORT 1.30/1.31 refuse
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path
