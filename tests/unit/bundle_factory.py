"""Small signed bundles made on the spot, for registry and API tests (no recipe, no model)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from waystation.bundles.builder import manifest_text
from waystation.bundles.chunks import split
from waystation.bundles.signing import sign_manifest


def make_bundle(root: Path, key, name: str, version: str, parent: str | None = None, *, body: bytes = b"") -> Path:
    """root/NAME/VERSION with a workflow script (plus `body`) and a manifest signed by `key`."""
    folder = root / name / version
    folder.mkdir(parents=True)
    data = f"# {name} {version}\n".encode() + body
    (folder / "workflow.py").write_bytes(data)
    manifest = {
        "format": 2, "name": name, "version": version, "parent": parent, "runtime": "0.1.0",
        "workflow": "workflow.py", "models": {},
        "files": [{"path": "workflow.py", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                   "chunks": [list(c) for c in split(data)]}],
    }
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(manifest, key) if key else manifest))
    return folder
