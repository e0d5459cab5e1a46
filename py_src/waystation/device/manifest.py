"""The bundle manifest: what a bundle holds, parsed and checked field by field.

A built bundle is a folder with `manifest.json` and the files it lists:

    {"format": 1, "name": "digits", "version": "1.0.0", "runtime": "0.1.0",
     "workflow": "workflow.py",
     "files": [{"path": "workflow.py", "size": 1234, "sha256": "..."}, ...],
     "models": {"classifier": {"file": "classifier.onnx", "opset": 17,
                               "inputs": [{"name": "input", "dtype": "float32", "shape": ["N", 64]}],
                               "outputs": [...]}}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BundleError

__all__ = ["FORMAT", "FileEntry", "Manifest", "ModelEntry"]

FORMAT = 1
_SEMVER = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelEntry:
    file: str
    opset: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    runtime: str
    workflow: str
    files: dict[str, FileEntry]
    models: dict[str, ModelEntry]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BundleError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise BundleError("manifest must be a JSON object")
        if data.get("format") != FORMAT:
            raise BundleError(f"manifest format {data.get('format')!r} is not supported (expected {FORMAT})")
        name = _field(data, "name", str)
        version = _field(data, "version", str)
        if not _SEMVER.fullmatch(version):
            raise BundleError(f"manifest version {version!r} is not semver (MAJOR.MINOR.PATCH)")
        files = {f.path: f for f in (_file(item) for item in _field(data, "files", list))}
        models = {str(k): _model(k, v, files) for k, v in _field(data, "models", dict).items()}
        workflow = _field(data, "workflow", str)
        if workflow not in files:
            raise BundleError(f"manifest workflow {workflow!r} is not among its files")
        known = {"format", "name", "version", "runtime", "workflow", "files", "models", "description"}
        return cls(
            name=name,
            version=version,
            runtime=_field(data, "runtime", str),
            workflow=workflow,
            files=files,
            models=models,
            description=str(data.get("description", "")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "runtime": self.runtime,
            "workflow": self.workflow,
            "files": [vars(f) for f in self.files.values()],
            "models": {k: vars(m) for k, m in self.models.items()},
            **self.extra,
        }


def _field(data: dict[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise BundleError(f"manifest has no {key!r} field")
    if not isinstance(data[key], kind):
        raise BundleError(f"manifest field {key!r} must be a {kind.__name__}")
    return data[key]


def _file(item: Any) -> FileEntry:
    if not isinstance(item, dict):
        raise BundleError("manifest 'files' entries must be objects")
    path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
    if not isinstance(path, str) or not _SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
        raise BundleError(f"manifest file path {path!r} is not a safe relative path")
    if not isinstance(size, int) or size < 0:
        raise BundleError(f"manifest file {path!r} has no valid size")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BundleError(f"manifest file {path!r} has no valid sha256")
    return FileEntry(path, size, sha)


def _model(name: Any, item: Any, files: dict[str, FileEntry]) -> ModelEntry:
    if not isinstance(item, dict) or item.get("file") not in files:
        raise BundleError(f"manifest model {name!r} must name one of the bundle's files")
    return ModelEntry(
        file=item["file"],
        opset=int(item.get("opset", 0)),
        inputs=list(item.get("inputs", [])),
        outputs=list(item.get("outputs", [])),
    )
