"""Build a bundle source folder into a servable bundle: files + manifest.json.

    dist/bundles/digits/latest.json            {"version": "1.0.0"}
    dist/bundles/digits/1.0.0/manifest.json
    dist/bundles/digits/1.0.0/classifier.onnx, workflow.py, samples.json
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..device.errors import BundleError
from ..device.manifest import FORMAT, Manifest
from .pypi_assets import cache_dir
from .source import BundleSource

__all__ = ["build_bundle", "model_schema"]


def build_bundle(source_dir: str | Path, out_root: str | Path, progress: Callable[[str], None] = print) -> Path:
    """Build `source_dir` into `out_root/NAME/VERSION/` and return that folder."""
    source = BundleSource.load(source_dir)
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

    manifest = Manifest.from_dict({
        "format": FORMAT,
        "name": source.name,
        "version": source.version,
        "description": source.description,
        "runtime": __version__,
        "workflow": source.workflow,
        "files": [_file_entry(target, name) for name in names],
        "models": {key: {"file": m["file"], **model_schema(target / m["file"])} for key, m in source.models.items()},
    })
    (target / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    (target.parent / "latest.json").write_text(json.dumps({"version": source.version}) + "\n")
    progress(f"built bundle {source.name} {source.version} -> {target}")
    return target


def _recipe_output(source: BundleSource, progress: Callable[[str], None]) -> Path:
    """Run the recipe once per source fingerprint; rebuilding a model is the slow part."""
    out = cache_dir() / "recipes" / f"{source.name}-{source.fingerprint()[:16]}"
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


def _file_entry(root: Path, name: str) -> dict[str, Any]:
    data = (root / name).read_bytes()
    return {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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
