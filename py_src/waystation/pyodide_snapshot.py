"""The Pyodide memory snapshot a worker starts from, made at `waystation build`.

A plain Pyodide boot spends seconds initialising the interpreter and importing the stdlib
modules Waystation needs; a snapshot of that memory, taken once here under Node with the
site's own Pyodide, loads in about a tenth of the time (bench/README.md). It only fits the
exact pyodide.asm.wasm and waystation wheel it was made with, so its file name carries a hash
of both, and the worker falls back to a plain boot whenever it cannot be used.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .bundles.pypi_assets import cache_dir

__all__ = ["SNAPSHOT_IMPORTS", "make_snapshot"]

# What a worker imports to open a bundle and answer a call; anything else imports as usual.
SNAPSHOT_IMPORTS = (
    "import asyncio, json, sqlite3, hashlib, traceback\n"
    "import waystation.device._bridge, waystation.device._data_bridge\n"
    "import waystation.device.hosts.browser, waystation.device.hosts.state_browser\n"
    "import waystation.device.hosts.data_browser, waystation.device.data.adopt\n"
    "import waystation.device.tokenizers\n"
)


def make_snapshot(root: Path, pyodide_dir: Path, wheel: Path) -> Path | None:
    """A gzip-compressed snapshot in `pyodide_dir`, named by what it fits; None if Node cannot make one.

    Made snapshots are kept in the build cache: a rebuild with the same Pyodide and wheel
    copies the file instead of booting Pyodide again.
    """
    key = hashlib.sha256()
    for part in (pyodide_dir / "pyodide.asm.wasm", pyodide_dir / "python_stdlib.zip", wheel):
        key.update(part.read_bytes())
    key.update(SNAPSHOT_IMPORTS.encode())
    name = f"waystation-{key.hexdigest()[:16]}.snapshot.gz"
    cached = cache_dir() / "snapshots" / name
    if not cached.is_file():
        node = shutil.which("node")
        if node is None:
            return None
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        done = subprocess.run(
            [node, str(root / "build" / "snapshot.mjs"), str(pyodide_dir), str(wheel), str(partial), SNAPSHOT_IMPORTS],
            capture_output=True, text=True, cwd=root,
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"making the Pyodide snapshot failed:\n{done.stderr[-2000:]}")
        partial.rename(cached)
    shutil.copyfile(cached, pyodide_dir / name)
    return pyodide_dir / name
