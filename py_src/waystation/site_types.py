"""TypeScript declarations of the page API, generated from its JSDoc by the pinned TypeScript.

`waystation build` writes them beside the modules they describe (waystation.d.ts beside
waystation.js, widget.d.ts beside widget.js, and those of the modules they import), so an app
written in TypeScript types `open()`, the App, the errors and <waystation-app> from the same
comments the JavaScript is checked against (tsconfig.json). Like esbuild, tsc comes from
node_modules: `npm ci` installs both.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["DECLARED_MODULES", "write_declarations"]

# The public modules; tsc follows their imports and declares those too.
DECLARED_MODULES = ("waystation.js", "widget.js")


def write_declarations(root: Path, web: Path, out: Path) -> list[Path]:
    """Write NAME.d.ts into `out` for each public module of `web` and what it imports; return them.

    Declarations only (`--noCheck`): the type check itself is tests/unit/test_types.py's job, so a
    type error never stops a build.
    """
    tsc = root / "node_modules" / ".bin" / "tsc"
    if not tsc.is_file():
        raise FileNotFoundError(f"{tsc} is missing: run `npm ci` first")
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.d.ts"))
    command = [
        str(tsc), "--ignoreConfig", "--allowJs", "--declaration", "--emitDeclarationOnly", "--noCheck",
        "--skipLibCheck", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler",
        "--lib", "es2023,dom", "--rootDir", str(web), "--outDir", str(out),
        *(str(web / name) for name in DECLARED_MODULES),
    ]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tsc could not declare the types of {', '.join(DECLARED_MODULES)} in {web}:\n"
                           f"{done.stdout}{done.stderr}")
    return sorted(set(out.glob("*.d.ts")) - before)
