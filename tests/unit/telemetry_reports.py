"""Telemetry reports as a device sends them (POST /api/telemetry), built from latency samples.

    report("digits", "1.0.1", functions={"classify": ([3.1, 4.0, 2.2], {"model-error": 1})})

A function's samples are its calls' latencies (ms); its errors map a code to a count (failed
calls are among the samples: "calls" counts every call).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from pathlib import Path
from typing import Any

from waystation.bundles.builder import manifest_text
from waystation.bundles.chunks import split
from waystation.bundles.signing import sign_manifest
from waystation.server.histogram import from_samples

__all__ = ["EDGES", "REFERENCE", "installation", "report", "report_id", "telemetry_bundle"]

EDGES = ["0.5", "0.7", "0.8", "0.9", "0.95"]
REFERENCE = [2, 5, 13, 30, 30, 20]


def telemetry_bundle(root: Path, key: Any, name: str, version: str, parent: str | None = None,
                     models: tuple[str, ...] = ("classifier",)) -> Path:
    """root/NAME/VERSION: a signed bundle with `models` (no real ONNX) and a signal "top_score" (EDGES, REFERENCE)."""
    folder = root / name / version
    folder.mkdir(parents=True)
    files = {"workflow.py": f"# {name} {version}\n".encode(),
             **{f"{m}.onnx": f"not a real model: {m} {version}".encode() for m in models}}
    for path, data in files.items():
        (folder / path).write_bytes(data)
    manifest = {
        "format": 2, "name": name, "version": version, "parent": parent, "runtime": "0.1.0",
        "workflow": "workflow.py", "models": {m: {"file": f"{m}.onnx", "opset": 17} for m in models},
        "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(),
                   "chunks": [list(c) for c in split(d)]} for p, d in files.items()],
        "telemetry": {"signals": {"top_score": {"edges": EDGES, "reference": REFERENCE}}, "alerts": []},
    }
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(manifest, key)))
    return folder


def installation() -> str:
    return secrets.token_hex(16)


def report_id() -> str:
    return str(uuid.uuid4())


def report(
    bundle: str, version: str, *, device: str | None = None,
    functions: dict[str, tuple[list[float], dict[str, int]]] | None = None,
    models: dict[str, list[float]] | None = None,
    startup: dict[str, list[float]] | None = None,
    signals: dict[str, list[int]] | None = None,
    start: int = 1_764_780_000_000,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"bundle": bundle, "version": version, "functions": {}, "models": {}, "startup": {},
                             "signals": {}}
    for name, (samples, errors) in (functions or {}).items():
        entry["functions"][name] = {"calls": len(samples), "errors": errors, "latency": from_samples(samples),
                                    "ranOn": {"device": len(samples)}}
    for name, samples in (models or {}).items():
        entry["models"][name] = {"runs": len(samples), "latency": from_samples(samples)}
    for phase, samples in (startup or {}).items():
        entry["startup"][phase] = from_samples(samples)
    for name, counts in (signals or {}).items():
        entry["signals"][name] = {"n": sum(counts), "counts": counts}
    return {
        "schema": 1, "id": report_id(), "installation": device or installation(),
        "start": start, "end": start + 60_000,
        "device": {"cores": 4, "memory": "4-8GB", "isolated": False, "threads": 1, "browser": "chromium"},
        "bundles": [entry],
    }
