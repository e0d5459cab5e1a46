"""Build a bundle source folder into a servable bundle: files, chunks, signed manifest.json.

    dist/bundles/digits/latest.json            {"version": "1.0.0"}
    dist/bundles/digits/1.0.0/manifest.json    lists each file with its chunks; signed
    dist/bundles/digits/1.0.0/classifier.onnx, workflow.py, samples.json
    dist/chunks/<sha256>                       the chunks of every file, content-addressed
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..device.errors import BundleError
from ..device.manifest import FORMAT, Manifest
from ._progress import BarFactory, no_bar
from .chunks import ChunkStore, split
from .layout import group_by_layer
from .pypi_assets import cache_dir
from .source import BundleSource

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["build_bundle", "manifest_text", "model_schema"]


def build_bundle(
    source_dir: str | Path,
    out_root: str | Path,
    progress: Callable[[str], None] = print,
    *,
    key: Ed25519PrivateKey | None = None,
    chunk_store: str | Path | None = None,
    bar: BarFactory = no_bar,
    variant: str | None = None,
) -> Path:
    """Build `source_dir` into `out_root/NAME/VERSION/` and return that folder.

    The manifest is signed with `key` when one is given; the files' chunks are written to
    `chunk_store` (a `chunks/` folder beside the bundles) when one is given.
    """
    source = BundleSource.load(source_dir)
    if variant is not None:
        source = source.variant(variant)
    made = _recipe_output(source, progress)
    target = Path(out_root) / source.name / source.version
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)

    names = [source.workflow, *source.files, *(m["file"] for m in source.models.values())]
    for name in names:
        origin = made / name if (made / name).exists() else source.root / name
        if not origin.is_file():
            raise BundleError(f"bundle {source.name!r}: {name!r} is neither made by its recipe nor in {source.root}")
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, target / name)
    for model in source.models.values():
        if model.get("layout", "by-layer") == "by-layer":
            group_by_layer(target / model["file"])  # one retrained layer: one changed region (layout.py)

    data = {
        "format": FORMAT,
        "name": source.name,
        "version": source.version,
        "parent": source.parent,
        "description": source.description,
        "runtime": __version__,
        "workflow": source.workflow,
        "files": _file_entries(target, names, chunk_store, bar),
        "models": {k: _model_entry(target, m) for k, m in source.models.items()},
        **source.data.to_manifest(),  # nothing for a bundle without event or feature tables
    }
    if key is not None:
        from .signing import sign_manifest

        data = sign_manifest(data, key)
    Manifest.from_dict(data)  # what we write must parse
    (target / "manifest.json").write_text(manifest_text(data), encoding="utf-8")
    (target.parent / "latest.json").write_text(json.dumps({"version": source.version}) + "\n")
    progress(f"built bundle {source.name} {source.version} -> {target}")
    return target


def manifest_text(data: dict[str, Any]) -> str:
    """The manifest as written: a line per field and per file (the signature covers the values, not this layout)."""
    def line(key: str, value: Any) -> str:
        if key == "files":
            return '"files": [\n' + ",\n".join(f"    {json.dumps(f, ensure_ascii=False)}" for f in value) + "\n  ]"
        return f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"

    return "{\n" + ",\n".join(f"  {line(k, v)}" for k, v in data.items()) + "\n}\n"


def _recipe_output(source: BundleSource, progress: Callable[[str], None]) -> Path:
    """Run the recipe once per source fingerprint; rebuilding a model is the slow part."""
    out = cache_dir() / "recipes" / f"{source.root.name}-{source.fingerprint()[:16]}"  # variants share it
    if (out / ".complete").exists():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    progress(f"running recipe of {source.name}")
    source.run_recipe(partial, progress)
    (partial / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def _file_entries(root: Path, names: list[str], chunk_store: str | Path | None, bar: BarFactory) -> list[dict[str, Any]]:
    """Hash and chunk each file, storing its chunks; one bar over all the bytes."""
    store = ChunkStore(chunk_store) if chunk_store is not None else None
    meter = bar(sum((root / name).stat().st_size for name in names), "chunking")
    entries = []
    try:
        for name in names:
            data = (root / name).read_bytes()
            chunks = split(data)
            if store is not None:
                store.put_file(data, chunks)
            entries.append({"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                            "chunks": [list(c) for c in chunks]})
            meter.update(len(data))
    finally:
        meter.close()
    return entries


def _model_entry(root: Path, model: dict[str, Any]) -> dict[str, Any]:
    """A model's manifest entry: its file, schema, and the sample its smoke check feeds it (if declared)."""
    entry = {"file": model["file"], **model_schema(root / model["file"])}
    if "sample" in model:
        entry["sample"] = model["sample"]
    return entry


def model_schema(path: Path) -> dict[str, Any]:
    """A model's opset and the names, dtypes and shapes of its inputs and outputs."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(path), load_external_data=False)

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
        return {"name": value.name, "dtype": str(tensor_dtype_to_np_dtype(tensor.elem_type)), "shape": dims}

    initializers = {i.name for i in model.graph.initializer}
    return {
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": [describe(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [describe(v) for v in model.graph.output],
    }
