"""Built bundles made offloadable: the same files with every `@export` allowed on the server, re-signed.

The demo bundles keep the default policy ("never"); tests and benchmarks of the server's run API
need versions whose functions it may run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from waystation.bundles.builder import manifest_text
from waystation.bundles.chunks import split
from waystation.bundles.signing import dev_key, sign_manifest

__all__ = ["offloadable"]


def offloadable(built: Path, out: Path, never: Iterable[str] = (), version: str | None = None) -> Path:
    """A copy of the built bundle `built` (NAME/VERSION) under `out`, each bare `@export` made
    `@export(offload="allowed")` but those of the functions named in `never`, its manifest
    updated (as `version`, its parent the original, when given) and signed with the dev key."""
    kept = set(never)
    folder = out / built.parent.name / (version or built.name)
    shutil.copytree(built, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if version is not None:
        manifest.update(version=version, parent=built.name)
    workflow = folder / manifest["workflow"]
    text = re.sub(r"@export\n((?:async )?def (\w+))",
                  lambda m: m[0] if m[2] in kept else f'@export(offload="allowed")\n{m[1]}', workflow.read_text()).encode()
    workflow.write_bytes(text)
    for entry in manifest["files"]:
        if entry["path"] == manifest["workflow"]:
            entry.update(size=len(text), sha256=hashlib.sha256(text).hexdigest(), chunks=[list(c) for c in split(text)])
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(manifest, dev_key())))
    return folder
