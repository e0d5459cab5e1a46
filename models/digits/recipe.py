"""Train the digits classifier on scikit-learn's bundled digits set and convert it to ONNX.

Reproducible: a fixed split and a deterministic solver give the same weights, and the
ONNX graph is written with fixed names, so the same versions give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

OPSET = 17
SAMPLES_PER_DIGIT = 2


def build(out_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    say = progress or (lambda _msg: None)
    digits = load_digits()
    x = digits.data.astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    say(f"training on {len(x_train)} images")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.5))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    say(f"held-out accuracy {accuracy:.4f} on {len(x_test)} images")

    onnx_model = to_onnx(
        model,
        initial_types=[("pixels", FloatTensorType([None, 64]))],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
        options={id(model): {"zipmap": False}},
        naming="digits_",
    )
    onnx_model.producer_version = ""
    onnx_model.doc_string = f"digits logistic regression, held-out accuracy {accuracy:.4f}"
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "classifier.onnx"
    model_path.write_bytes(onnx_model.SerializeToString())

    samples = []
    for digit in range(10):
        picks = [i for i, y in enumerate(y_test) if y == digit][:SAMPLES_PER_DIGIT]
        samples += [{"label": digit, "pixels": [int(v) for v in x_test[i]]} for i in picks]
    samples_path = out_dir / "samples.json"
    samples_path.write_text(json.dumps({"accuracy": accuracy, "samples": samples}))
    return {"classifier": model_path, "samples.json": samples_path}
