"""Train a logistic regression on scikit-learn's iris set (four features) and convert it to ONNX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

OPSET = 17


def build(out_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data.astype("float32"), iris.target)
    onnx_model = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, 4]))],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
        options={id(model): {"zipmap": False}},
        naming="rows_",
    )
    onnx_model.producer_version = ""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "classifier.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    return {"classifier": path}
