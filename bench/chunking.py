"""Chunk sizes by measurement: bytes a device fetches for an update vs bytes that changed.

    .venv/bin/python bench/chunking.py [--mb 24]

A synthetic ONNX model (float32 initializers, like a transformer's weight matrices) is
changed in the ways real updates change a model, and each pair is cut with a few FastCDC
parameter choices; the digits bundle is built twice, differing in its workflow script.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from waystation.bundles.builder import build_bundle
from waystation.bundles.chunks import split

ROOT = Path(__file__).resolve().parents[1]
CHOICES = [(4, 16, 64), (8, 32, 128), (16, 64, 128), (16, 64, 256), (32, 128, 512), (64, 256, 1024)]  # KiB
EDITS = 20
MANIFEST_BYTES_PER_CHUNK = 76  # ["<64 hex>",NNNNN], in the canonical JSON


def model_bytes(tensors: dict[str, np.ndarray], doc: str = "") -> bytes:
    inits = [numpy_helper.from_array(a, name) for name, a in tensors.items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    node = helper.make_node("Identity", ["x"], ["y"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    graph = helper.make_graph([node], "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, doc_string=doc, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def scenarios(mb: int) -> list[tuple[str, list[bytes], list[bytes], int]]:
    """(name, old models, new models, bytes changed) for the updates a model sees."""
    rng = np.random.default_rng(0)
    layers = max(2, round(mb * 2**20 / (384 * 1536 * 4)))
    base = {f"layer{i}.weight": rng.standard_normal((384, 1536), dtype=np.float32) for i in range(layers)}
    base |= {f"layer{i}.bias": rng.standard_normal(1536, dtype=np.float32) for i in range(layers)}
    old = model_bytes(base)
    mid = f"layer{layers // 2}.weight"

    retrained = dict(base, **{mid: rng.standard_normal((384, 1536), dtype=np.float32)})
    poked = []
    for _ in range(EDITS):
        name = f"layer{rng.integers(layers)}.weight"
        edit = dict(base, **{name: base[name].copy()})
        row, col = rng.integers(384), rng.integers(1536 - 4)
        edit[name][row, col:col + 4] += 1.0
        poked.append(model_bytes(edit))
    grown = dict(base, **{mid: rng.standard_normal((400, 1536), dtype=np.float32)})
    return [
        ("one weight matrix retrained (2.25 MiB)", [old], [model_bytes(retrained)], base[mid].nbytes),
        (f"4 floats changed in one matrix (mean of {EDITS} places)", [old] * EDITS, poked, 16),
        ("one matrix grown by 16 rows (shifts the rest)", [old], [model_bytes(grown)], grown[mid].nbytes),
        ("doc string edited at the head (shifts all)", [old], [model_bytes(base, doc="v2")], 4),
    ]


def sizes(min_kib: int, avg_kib: int, max_kib: int) -> dict[str, int]:
    return {"min_size": min_kib * 1024, "avg_size": avg_kib * 1024, "max_size": max_kib * 1024}


def fetched(old: bytes, new: bytes, *choice: int) -> int:
    have = {sha for sha, _ in split(old, **sizes(*choice))}
    want = dict(split(new, **sizes(*choice)))
    return sum(size for sha, size in want.items() if sha not in have)


def digits_pair(tmp: Path) -> tuple[Path, Path]:
    a = build_bundle(ROOT / "models" / "digits", tmp / "a", progress=lambda _m: None)
    source = shutil.copytree(ROOT / "models" / "digits", tmp / "src")
    with (source / "workflow.py").open("a") as f:
        f.write("\n# a comment: the only change\n")
    return a, build_bundle(source, tmp / "b", progress=lambda _m: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=24, help="size of the synthetic model in MiB")
    args = parser.parse_args()
    header = "| update | changed | " + " | ".join(f"{lo}/{avg}/{hi} KiB" for lo, avg, hi in CHOICES) + " |"
    print(header, "|---|---|" + "---|" * len(CHOICES), sep="\n")
    rows = scenarios(args.mb)
    for name, old, new, changed in rows:
        cells = []
        for choice in CHOICES:
            got = sum(fetched(o, n, *choice) for o, n in zip(old, new)) / len(new)
            cells.append(f"{got / 1024:,.0f} KiB")
        print(f"| {name} | {changed / 1024:,.2f} KiB | " + " | ".join(cells) + " |")
    model = rows[0][1][0]
    counts = [len(split(model, **sizes(*choice))) for choice in CHOICES]
    print(f"| chunks in the {len(model) / 2**20:.1f} MiB model = requests for a first install | | "
          + " | ".join(str(c) for c in counts) + " |")
    print("| their share of the manifest, fetched on every update | | "
          + " | ".join(f"{c * MANIFEST_BYTES_PER_CHUNK / 1024:.1f} KiB" for c in counts) + " |")
    with tempfile.TemporaryDirectory() as tmp:
        a, b = digits_pair(Path(tmp))
        for path in ("workflow.py", "classifier.onnx"):
            old, new = (a / path).read_bytes(), (b / path).read_bytes()
            cells = [f"{fetched(old, new, *choice) / 1024:.1f} KiB" for choice in CHOICES]
            print(f"| digits {path} ({len(new) / 1024:.1f} KiB) | {'edited' if old != new else 'same'} | "
                  + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
