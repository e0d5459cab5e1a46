"""Waystation's runtime alone, for an app that has its own page and server.

`waystation build --runtime-only --out app/static/waystation` writes what a page needs to
`import { open } from "/static/waystation/waystation.js"` or use <waystation-app>: the public
modules and what they import, the worker, the service worker and its modules, Pyodide,
onnxruntime-web, the vendored modules, the wheels, boot.json, the bundles and their chunks,
and the TypeScript declarations; none of the demo pages. docs/embedding.md says which headers
the app's server should send with them.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from .bundles._progress import BarFactory, no_bar
from .site import Progress, build_site, write_precache

__all__ = ["RUNTIME_ENTRIES", "build_runtime", "keep_runtime", "runtime_modules"]

# The page's modules an app uses, and the worker waystation.js starts by URL (not an import).
RUNTIME_ENTRIES = ("waystation.js", "widget.js", "worker.js")

# Static imports and re-exports of a sibling module: `import ... from "./x.js"`, `import "./x.js"`.
_IMPORT = re.compile(r"""(?:^|[;\s])(?:import|export)\b[^"'`;]*?["'](\./[^"'/]+\.m?js)["']""")


def runtime_modules(web: Path, entries: tuple[str, ...] = RUNTIME_ENTRIES) -> set[str]:
    """The file names of `web` that `entries` import, directly or not, the entries included.

    Only imports of files in `web` itself count: `./sw/...` and `./vendor/...` come from
    elsewhere in the site and are kept whole.
    """
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = web / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the runtime imports it")
        seen.add(name)
        todo.extend(m[2:] for m in _IMPORT.findall(path.read_text()) if (web / m[2:]).is_file())
    return seen


def build_runtime(
    root: Path, out: Path, progress: Progress = print, *, key: Path | None = None, bar: BarFactory = no_bar
) -> dict[str, Any]:
    """Build the site, then keep only the runtime in `out` (replaced); return the boot facts."""
    staging = out.with_name(out.name + ".runtime")
    boot = build_site(root, staging, progress, key=key, bar=bar)
    keep_runtime(root, staging, progress)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    progress(f"runtime built in {out}")
    return boot


def keep_runtime(root: Path, site: Path, progress: Progress = print) -> list[str]:
    """Delete from the built `site` the page files the runtime does not use; return their names.

    The service worker's precache list is written again for the files kept, so that it never
    asks for a demo page the app does not have.
    """
    web = root / tomllib.loads((root / "build" / "site.toml").read_text())["web"]["from"]
    kept = runtime_modules(web)
    kept |= {name.removesuffix(".js") + ".d.ts" for name in kept}
    dropped = sorted(p.name for p in web.iterdir() if p.name not in kept and (site / p.name).exists())
    for name in dropped:
        target = site / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for declaration in site.glob("*.d.ts"):
        if declaration.name not in kept:
            declaration.unlink()
    entries = write_precache(root, site)
    progress(f"runtime only: left out {', '.join(dropped) or 'nothing'}; precache: {len(entries)} files")
    return dropped
