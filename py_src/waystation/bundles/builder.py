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
from ..device.manifest import FORMAT, Manifest, canonical_json
from ._progress import BarFactory, no_bar
from .checks import check_source
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
    force: bool = False,
) -> Path:
    """Build `source_dir` into `out_root/NAME/VERSION/` and return that folder.

    Nothing is signed nor written there until the bundle passes its checks (bundle.toml,
    workflow, models, samples: bundles/checks.py) and its smoke check. The manifest is signed
    with `key` when one is given; the files' chunks are written to `chunk_store` (a `chunks/`
    folder beside the bundles) when one is given. A folder already holding that version built
    from other content is refused unless `force`: a version's bytes never change once built.
    """
    source = BundleSource.load(source_dir)
    if variant is not None:
        source = source.variant(variant)
    made = _recipe_output(source, progress)
    origins = check_source(source, made)
    target = Path(out_root) / source.name / source.version
    staging = target.with_name(f".{source.version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        data = _stage(source, origins, staging, bar)
        report = _smoke_check(staging)
        timings = ", ".join(f"{name} {r['ms']:.1f} ms" for name, r in report.items()) or "no models"
        progress(f"smoke check of {source.name} {source.version} passed ({timings})")
        _refuse_other_content(target, data, source, force)
        if key is not None:
            from .signing import sign_manifest

            data = sign_manifest(data, key)
        Manifest.from_dict(data)  # what we write must parse
        (staging / "manifest.json").write_text(manifest_text(data), encoding="utf-8")
        if chunk_store is not None:
            store = ChunkStore(chunk_store)
            for entry in data["files"]:
                store.put_file((staging / entry["path"]).read_bytes(), [tuple(c) for c in entry["chunks"]])
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not any(target.parent.iterdir()):
            target.parent.rmdir()  # a first build that failed leaves no trace
    (target.parent / "latest.json").write_text(json.dumps({"version": source.version}) + "\n")
    progress(f"built bundle {source.name} {source.version} -> {target}")
    return target


def _stage(source: BundleSource, origins: dict[str, Path], staging: Path, bar: BarFactory) -> dict[str, Any]:
    """Copy the bundle's files into `staging` and write its unsigned manifest there; return the manifest."""
    for name, origin in origins.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, staging / name)
    for model in source.models.values():
        if model.get("layout", "by-layer") == "by-layer":
            group_by_layer(staging / model["file"])  # one retrained layer: one changed region (layout.py)
    data = {
        "format": FORMAT,
        "name": source.name,
        "version": source.version,
        "parent": source.parent,
        "description": source.description,
        "runtime": __version__,
        "workflow": source.workflow,
        "files": _file_entries(staging, list(origins), bar),
        "models": {k: _model_entry(staging, m) for k, m in source.models.items()},
        **source.data.to_manifest(),  # nothing for a bundle without event or feature tables
        **source.telemetry.to_manifest(),  # nothing for a bundle without [telemetry]
    }
    Manifest.from_dict(data)
    (staging / "manifest.json").write_text(manifest_text(data), encoding="utf-8")
    return data


def _smoke_check(folder: Path) -> dict[str, Any]:
    """The device's smoke check (device/smoke.py) of the staged bundle, on this machine's onnxruntime."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from ..device.runtime import App
    from ..device.smoke import smoke_check

    async def check() -> dict[str, Any]:
        app = await App.open(folder)
        try:
            return await smoke_check(app)
        finally:
            app.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(check())
    with ThreadPoolExecutor(1) as pool:  # called from async code (`waystation run`): a loop of its own
        return pool.submit(asyncio.run, check()).result()


def _refuse_other_content(target: Path, data: dict[str, Any], source: BundleSource, force: bool) -> None:
    """BundleError if `target` holds this version built from other content (unless `force`)."""
    path = target / "manifest.json"
    if force or not path.is_file():
        return
    try:
        old = Manifest.from_json(path.read_bytes())
    except BundleError:
        old = None
    if old is not None and old.payload == canonical_json({k: v for k, v in data.items() if k != "signature"}):
        return  # the same bundle again: re-signing it is harmless
    raise BundleError(f"{target} already holds {source.name} {source.version} built from other content "
                      f"({_what_changed(old, data)}): a version never changes once built. Bump 'version' in "
                      f"{source.root / 'bundle.toml'}, or pass --force to replace a build that was never published")


def _what_changed(old: Manifest | None, data: dict[str, Any]) -> str:
    if old is None:
        return "its manifest.json cannot be read"
    new = {f["path"]: f["sha256"] for f in data["files"]}
    was = {path: f.sha256 for path, f in old.files.items()}
    parts = [f"{verb}: {', '.join(paths)}" for verb, paths in (
        ("changed", [p for p in new if p in was and was[p] != new[p]]),
        ("added", [p for p in new if p not in was]),
        ("removed", [p for p in was if p not in new]),
    ) if paths]
    return "; ".join(parts) or "same files, other manifest fields"


def manifest_text(data: dict[str, Any]) -> str:
    """The manifest as written: a line per field and per file (the signature covers the values, not this layout)."""
    def line(key: str, value: Any) -> str:
        if key == "files":
            return '"files": [\n' + ",\n".join(f"    {json.dumps(f, ensure_ascii=False)}" for f in value) + "\n  ]"
        return f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"

    return "{\n" + ",\n".join(f"  {line(k, v)}" for k, v in data.items()) + "\n}\n"


def _recipe_output(source: BundleSource, progress: Callable[[str], None]) -> Path:
    """Run the recipe once per source fingerprint; rebuilding a model is the slow part."""
    if source.recipe is None:
        return source.root  # nothing is made: every file comes from the folder, and nothing is cached
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


def _file_entries(root: Path, names: list[str], bar: BarFactory) -> list[dict[str, Any]]:
    """Hash and chunk each file; one bar over all the bytes."""
    meter = bar(sum((root / name).stat().st_size for name in names), "chunking")
    entries = []
    try:
        for name in names:
            data = (root / name).read_bytes()
            entries.append({"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                            "chunks": [list(c) for c in split(data)]})
            meter.update(len(data))
    finally:
        meter.close()
    return entries


def _model_entry(root: Path, model: dict[str, Any]) -> dict[str, Any]:
    """A model's manifest entry: its file, schema, the sample its smoke check feeds it and where it may run (if declared)."""
    entry = {"file": model["file"], **model_schema(root / model["file"])}
    if "sample" in model:
        entry["sample"] = model["sample"]
    if "execution" in model:  # absent means ["wasm"]: a manifest without it is what it was before the key
        entry["execution"] = list(model["execution"])
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
