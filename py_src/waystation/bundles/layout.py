"""Delta-friendly model files: the tensors of each layer side by side.

A fine-tune that retrains one layer changes that layer's tensors. Where an exporter or a
quantizer scatters them (MiniLM int8: the biases near the head of the file, the attention
weights in the middle, the feed-forward weights at the end), the change touches three regions
of the file, and content-defined chunking fetches up to a chunk around each region on top of its
own bytes. Grouped by layer (`encoder.layer.5.*` together), the change is one region.

ONNX gives the order of initializers no meaning: the model computes exactly what it did, only
where its bytes sit in the file changes. Measured in bench/README.md (delta updates).

    group_by_layer(Path("dist/bundles/minilm/1.0.0/minilm-int8.onnx"))   # True if it moved anything
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["group_by_layer", "layer_key"]

# "encoder.layer.5.attention.self.query.bias" -> ("encoder.layer", 5): a numbered path component.
_LAYER = re.compile(r"^(.*?)\.(\d+)\.")
_MAX_BYTES = 1 << 30  # a protobuf file holds 2 GiB at most; bigger models keep their layout


def layer_key(name: str) -> tuple[int, str, int]:
    """Where an initializer goes: the unnumbered ones first, then layer by layer."""
    match = _LAYER.match(name)
    return (1, match.group(1), int(match.group(2))) if match else (0, "", 0)


def group_by_layer(path: Path) -> bool:
    """Rewrite the ONNX model at `path` with its initializers grouped by layer; whether anything moved."""
    import onnx

    if path.stat().st_size > _MAX_BYTES:
        return False
    model = onnx.load(str(path), load_external_data=False)
    tensors = model.graph.initializer
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        return False
    order = sorted(range(len(tensors)), key=lambda i: (layer_key(tensors[i].name), i))
    if order == list(range(len(tensors))):
        return False
    grouped = [onnx.TensorProto.FromString(tensors[i].SerializeToString()) for i in order]
    del tensors[:]
    tensors.extend(grouped)
    path.write_bytes(model.SerializeToString())
    return True
