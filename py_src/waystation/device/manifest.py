"""The bundle manifest: what a bundle holds, parsed and checked field by field.

A built bundle is a folder with `manifest.json` and the files it lists:

    {"format": 2, "name": "digits", "version": "1.0.1", "parent": "1.0.0", "runtime": "0.1.0",
     "description": "...", "workflow": "workflow.py",
     "files": [{"path": "workflow.py", "size": 4653, "sha256": "...",
                "chunks": [["<sha256 of the chunk>", 4653]]}, ...],
     "models": {"classifier": {"file": "classifier.onnx", "opset": 17,
                               "inputs": [{"name": "pixels", "dtype": "float32", "shape": ["?", 64]}],
                               "outputs": [...],
                               "sample": {"pixels": {"dtype": "float32", "shape": [1, 64], "fill": 0}}}},
     "signature": {"alg": "Ed25519", "key": "<16 hex>", "value": "<base64>"}}

A bundle that declares event or feature tables (bundle.toml's `[events.*]`, `[features.*]`)
carries them normalised in `events` and `features` (see device/data/schema.py), e.g.
    "events": {"clicks": {"fields": {"item_id": "str"}, "retention": {"seconds": 604800, "rows": 100000},
                          "relay": ["item_id"], "hook": "check_click"}},
    "features": {"items": {"key": "item_id", "max_age": "1h"}}
A bundle without them has neither field, so its manifest is what it was before they existed.
Likewise `telemetry`, the signals a bundle reports and the alerts a device raises (bundle.toml's
`[telemetry]`, see device/telemetry.py), with fractional numbers as decimal strings:
    "telemetry": {"signals": {"top_score": {"edges": ["0.5", "0.9"], "reference": [2, 5, 13]}},
                  "alerts": [{"name": "drift", "signal": "top_score", "psi": "0.2", "min_calls": 20}]}

`parent` is the version this one updates (or null), `runtime` the oldest Waystation that can
run it. Each file lists its content-defined chunks in order: SHA-256 hex of the chunk's bytes
and its size; they cover the file exactly, and are fetched from `chunks/<sha256>`. A model's
optional `sample` is the input its smoke check feeds it before a new version becomes active on
a device (`waystation.device.smoke`): per input a dtype, a concrete shape, and the integer
every element is set to. A model's optional `execution` lists where it may run on a device, e.g.
["webgpu", "wasm"] (absent: WASM only; web/execution.js chooses).

Canonical JSON, the bytes that are signed (`canonical_json`, `Manifest.payload`):
the manifest without its `signature` field, serialised with object keys sorted, no
whitespace (separators "," and ":"), non-ASCII characters as themselves, UTF-8 encoded,
i.e. `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
A browser reproduces the same bytes with `JSON.stringify` of a copy whose objects have
their keys inserted in sorted order, encoded with `TextEncoder`. The two agree because the
manifest may only hold values on which they agree, and the parser refuses anything else:
- no floats (JS prints 1.0 as "1", 1e21 differently): integers only, within +-(2**53 - 1);
- object keys match `[A-Za-z_][A-Za-z0-9_.-]*`: ASCII, so code-point and UTF-16 sorts agree,
  and never integer-like, which JS objects would enumerate first whatever the insertion order;
- strings are valid Unicode (no lone surrogates, which JSON.stringify escapes and UTF-8 cannot
  encode); control characters come out as the same escapes in both (\\n, \\u001f, ...).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .data.schema import Declarations
from .errors import BundleError, DataError
from .telemetry import Telemetry
from .telemetry import parse_manifest as parse_telemetry

__all__ = ["FORMAT", "FileEntry", "Manifest", "ModelEntry", "SIGNATURE_ALG", "Signature", "canonical_json", "is_safe_path"]

FORMAT = 2
SIGNATURE_ALG = "Ed25519"
MAX_SAFE_INTEGER = 2**53 - 1
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_JSON_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# The execution providers a model may declare (web/execution.js chooses among them on the device).
_EXECUTION_PROVIDERS = ("webgpu", "wasm")
_KNOWN = {"format", "name", "version", "parent", "runtime", "workflow", "files", "models", "description", "signature"}


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    chunks: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "chunks": [list(c) for c in self.chunks]}


@dataclass(frozen=True)
class ModelEntry:
    file: str
    opset: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    #: {input name: {"dtype", "shape", "fill"}}: the smoke check's input, when the bundle declares one.
    sample: dict[str, dict[str, Any]] | None = None
    #: Where the model may run on a device, in order of preference (bundle.toml `execution`):
    #: e.g. ["webgpu", "wasm"]; None when not declared, which means ["wasm"] (web/execution.js).
    execution: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.file, "opset": self.opset, "inputs": self.inputs, "outputs": self.outputs}
        if self.sample is not None:
            data["sample"] = self.sample
        if self.execution is not None:
            data["execution"] = self.execution
        return data


@dataclass(frozen=True)
class Signature:
    alg: str
    key: str
    value: bytes

    def to_dict(self) -> dict[str, str]:
        return {"alg": self.alg, "key": self.key, "value": base64.b64encode(self.value).decode("ascii")}


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    parent: str | None
    runtime: str
    workflow: str
    files: dict[str, FileEntry]
    models: dict[str, ModelEntry]
    description: str = ""
    signature: Signature | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The canonical JSON of the manifest as parsed, without its signature: what is signed.
    payload: bytes = field(default=b"", compare=False, repr=False)

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
        payload = canonical_json({k: v for k, v in data.items() if k != "signature"})
        version = _semver(data, "version")
        files = _files(_field(data, "files", list))
        workflow = _field(data, "workflow", str)
        if workflow not in files:
            raise BundleError(f"manifest workflow {workflow!r} is not among its files")
        return cls(
            name=_field(data, "name", str),
            version=version,
            parent=_parent(data, version),
            runtime=_semver(data, "runtime"),
            workflow=workflow,
            files=files,
            models={str(k): _model(k, v, files) for k, v in _field(data, "models", dict).items()},
            description=_field(data, "description", str) if "description" in data else "",
            signature=_signature(data["signature"]) if "signature" in data else None,
            extra=_extra(data),
            payload=payload,
        )

    @property
    def telemetry(self) -> Telemetry:
        """The signals the bundle reports and the alerts a device raises (none for most bundles)."""
        return parse_telemetry(self.extra["telemetry"]) if "telemetry" in self.extra else Telemetry()

    @property
    def declarations(self) -> Declarations:
        """The event and feature tables the bundle declares (none for most bundles)."""
        return _declarations(self.extra)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "parent": self.parent,
            "description": self.description,
            "runtime": self.runtime,
            "workflow": self.workflow,
            "files": [f.to_dict() for f in self.files.values()],
            "models": {k: m.to_dict() for k, m in self.models.items()},
            **self.extra,
        }
        if self.signature is not None:
            data["signature"] = self.signature.to_dict()
        return data

    def chunks(self) -> dict[str, int]:
        """Every chunk of the bundle once: {sha256: size}."""
        return {sha: size for entry in self.files.values() for sha, size in entry.chunks}


def _extra(data: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    _declarations(extra)  # malformed tables are a malformed manifest
    if "telemetry" in extra:
        parse_telemetry(extra["telemetry"])
    return extra


def _declarations(extra: dict[str, Any]) -> Declarations:
    try:
        return Declarations.parse(extra.get("events", {}), extra.get("features", {}))
    except DataError as exc:
        raise BundleError(f"manifest: {exc}") from None


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value (see the module docstring); BundleError if it has no such form."""
    _check_canonical(value, "manifest")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_canonical(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise BundleError(f"{where}: integer {value} is beyond what JavaScript holds exactly (2**53 - 1)")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BundleError(f"{where}: string {value!r} is not valid Unicode (lone surrogate)") from None
    elif isinstance(value, float):
        raise BundleError(f"{where}: {value!r} is a float; manifests hold integers only, so every signer agrees on its digits")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_canonical(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _JSON_KEY.fullmatch(key):
                raise BundleError(f"{where}: key {key!r} must match {_JSON_KEY.pattern} (ASCII, not integer-like)")
            _check_canonical(item, f"{where}.{key}")
    else:
        raise BundleError(f"{where}: {type(value).__name__} is not a JSON value")


def _field(data: dict[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise BundleError(f"manifest has no {key!r} field")
    if not isinstance(data[key], kind):
        raise BundleError(f"manifest field {key!r} must be a {kind.__name__}")
    return data[key]


def _semver(data: dict[str, Any], key: str) -> str:
    value = _field(data, key, str)
    if not _SEMVER.fullmatch(value):
        raise BundleError(f"manifest {key} {value!r} is not semver (MAJOR.MINOR.PATCH)")
    return str(value)


def _release(version: str) -> tuple[int, ...]:
    match = _SEMVER.fullmatch(version)
    assert match is not None
    return tuple(int(part) for part in match.groups())


def _parent(data: dict[str, Any], version: str) -> str | None:
    if "parent" not in data:
        raise BundleError("manifest has no 'parent' field (null for a first version)")
    if data["parent"] is None:
        return None
    parent = _semver(data, "parent")
    if parent == version or _release(parent) > _release(version):
        raise BundleError(f"manifest parent {parent!r} must be an earlier version than {version!r}")
    return parent


def _files(items: list[Any]) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for item in items:
        entry = _file(item)
        if entry.path in files:
            raise BundleError(f"manifest lists file {entry.path!r} twice")
        files[entry.path] = entry
    return files


def is_safe_path(path: str) -> bool:
    """Whether `path` is a relative path a bundle may hold: ASCII segments, no '..', no leading '/'."""
    return bool(_SAFE_PATH.fullmatch(path)) and ".." not in path.split("/")


def _file(item: Any) -> FileEntry:
    if not isinstance(item, dict):
        raise BundleError("manifest 'files' entries must be objects")
    path, size, sha = item.get("path"), item.get("size"), item.get("sha256")
    if not isinstance(path, str) or not is_safe_path(path):
        raise BundleError(f"manifest file path {path!r} is not a safe relative path")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BundleError(f"manifest file {path!r} has no valid size")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise BundleError(f"manifest file {path!r} has no valid sha256")
    return FileEntry(path, size, sha, _chunks(path, size, item.get("chunks")))


def _chunks(path: str, size: int, items: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(items, list):
        raise BundleError(f"manifest file {path!r} has no 'chunks' list")
    chunks = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _SHA256.fullmatch(item[0])
                and isinstance(item[1], int) and not isinstance(item[1], bool) and item[1] > 0):
            raise BundleError(f"manifest file {path!r}: chunk {item!r} is not [sha256 hex, size > 0]")
        chunks.append((item[0], item[1]))
    total = sum(size for _, size in chunks)
    if total != size:
        raise BundleError(f"manifest file {path!r}: its chunks add up to {total} bytes, not its size {size}")
    return tuple(chunks)


def _model(name: Any, item: Any, files: dict[str, FileEntry]) -> ModelEntry:
    if not isinstance(item, dict) or item.get("file") not in files:
        raise BundleError(f"manifest model {name!r} must name one of the bundle's files")
    return ModelEntry(
        file=item["file"],
        opset=int(item.get("opset", 0)),
        inputs=list(item.get("inputs", [])),
        outputs=list(item.get("outputs", [])),
        sample=_sample(name, item["sample"]) if "sample" in item else None,
        execution=_execution(name, item["execution"]) if "execution" in item else None,
    )


def _execution(model: Any, item: Any) -> list[str]:
    known = _EXECUTION_PROVIDERS
    if not isinstance(item, list) or not item or not all(p in known for p in item) or len(set(item)) != len(item):
        raise BundleError(f"manifest model {model!r} execution must list each of {list(known)} at most once, got {item!r}")
    return list(item)


def _sample(model: Any, item: Any) -> dict[str, dict[str, Any]]:
    where = f"manifest model {model!r} sample"
    if not isinstance(item, dict) or not item:
        raise BundleError(f"{where} must map input names to {{dtype, shape, fill}}")
    for name, spec in item.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "fill"}:
            raise BundleError(f"{where} {name!r} must have exactly 'dtype', 'shape' and 'fill'")
        shape, fill = spec["shape"], spec["fill"]
        if not isinstance(spec["dtype"], str):
            raise BundleError(f"{where} {name!r}: dtype must be a string such as 'float32'")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise BundleError(f"{where} {name!r}: shape must be a list of sizes (integers >= 0), got {shape!r}")
        if not _is_int(fill):
            raise BundleError(f"{where} {name!r}: fill must be an integer (manifests hold no floats), got {fill!r}")
    return dict(item)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _signature(item: Any) -> Signature:
    if not isinstance(item, dict) or set(item) != {"alg", "key", "value"}:
        raise BundleError("manifest 'signature' must be an object with exactly 'alg', 'key' and 'value'")
    if item["alg"] != SIGNATURE_ALG:
        raise BundleError(f"manifest signature alg {item['alg']!r} is not supported (expected {SIGNATURE_ALG!r})")
    if not isinstance(item["key"], str) or not _KEY_ID.fullmatch(item["key"]):
        raise BundleError(f"manifest signature key {item['key']!r} is not a key id (16 lowercase hex digits)")
    try:
        value = base64.b64decode(item["value"], validate=True) if isinstance(item["value"], str) else b""
    except binascii.Error:
        value = b""
    if len(value) != 64:
        raise BundleError("manifest signature value is not the base64 of a 64-byte Ed25519 signature")
    return Signature(SIGNATURE_ALG, item["key"], value)
