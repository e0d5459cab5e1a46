"""Model files laid out layer by layer, so that a retrained layer is one changed region of the file."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from waystation.bundles.builder import build_bundle
from waystation.bundles.layout import group_by_layer, layer_key

SCATTERED = ["enc.layer.1.w", "enc.layer.0.b", "const_float32_2.0", "enc.layer.10.w", "enc.layer.0.w", "enc.layer.1.b"]
GROUPED = ["const_float32_2.0", "enc.layer.0.b", "enc.layer.0.w", "enc.layer.1.w", "enc.layer.1.b", "enc.layer.10.w"]


def scattered_model(path: Path) -> Path:
    """y = x + the sum of every initializer, with the initializers of each layer apart."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), name) for name in SCATTERED]
    nodes, last = [], "x"
    for i, name in enumerate(SCATTERED):
        nodes.append(helper.make_node("Add", [last, name], [f"s{i}"]))
        last = f"s{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what opset 17 needs, and onnxruntime reads
    onnx.save(model, str(path))
    return path


def run(path: Path) -> np.ndarray:
    return ort.InferenceSession(str(path)).run(None, {"x": np.arange(4, dtype=np.float32)})[0]


def names(path: Path) -> list[str]:
    return [t.name for t in onnx.load(str(path)).graph.initializer]


def test_layers_are_grouped_and_the_model_computes_the_same(tmp_path):
    path = scattered_model(tmp_path / "m.onnx")
    before, size = run(path), path.stat().st_size
    assert group_by_layer(path) is True
    assert names(path) == GROUPED
    assert path.stat().st_size == size
    np.testing.assert_array_equal(run(path), before)
    assert group_by_layer(path) is False  # already grouped: the file is left alone


@pytest.mark.parametrize(("name", "key"), [
    ("encoder.layer.5.attention.self.query.bias", (1, "encoder.layer", 5)),
    ("model.layers.12.mlp.weight", (1, "model.layers", 12)),
    ("const_float32_5.656854", (0, "", 0)),  # a number, but not a path component
    ("embeddings.word_embeddings.weight_quantized", (0, "", 0)),
])
def test_layer_key(name, key):
    assert layer_key(name) == key


@pytest.mark.parametrize(("layout", "expected"), [(None, GROUPED), ('"as-made"', SCATTERED)])
def test_the_builder_groups_models_unless_told_not_to(tmp_path, layout, expected):
    source = tmp_path / "source"
    source.mkdir()
    scattered_model(source / "m.onnx")
    (source / "workflow.py").write_text("from waystation.device import export\n\n@export\ndef noop(ctx):\n    return None\n")
    lines = ['name = "layered"', 'version = "1.0.0"', 'workflow = "workflow.py"', "", "[models.m]", 'file = "m.onnx"']
    (source / "bundle.toml").write_text("\n".join(lines + ([f"layout = {layout}"] if layout else [])) + "\n")
    built = build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    assert names(built / "m.onnx") == expected
