"""The TypeScript compiler over the page's JavaScript and over a typed app using the shipped declarations.

- tsconfig.json: `tsc --noEmit --checkJs` over web/*.js and service_worker/**/*.js, against their JSDoc.
- examples/typed-usage/app.ts, compiled with `--noEmit --strict` against the declarations that
  `waystation build` ships (site_types.write_declarations), as an app in TypeScript meets them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from waystation.site_types import write_declarations

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def tsc(*args: str) -> subprocess.CompletedProcess[str]:
    if not TSC.is_file():
        pytest.fail(f"{TSC} is missing: run `npm ci` (make setup)")
    return subprocess.run([str(TSC), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_compiles(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"tsc exited {done.returncode}:\n{done.stdout}{done.stderr}"


def test_page_and_service_worker_javascript_type_checks() -> None:
    assert_compiles(tsc("--project", "tsconfig.json"))


@pytest.fixture(scope="module")
def declarations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime as an app holds it: NAME.d.ts in a folder `waystation/`, as the build writes them."""
    folder = tmp_path_factory.mktemp("types") / "waystation"
    written = write_declarations(ROOT, ROOT / "web", folder)
    assert {"waystation.d.ts", "widget.d.ts"} <= {p.name for p in written}
    return folder


def compile_app(declarations: Path, app: Path) -> subprocess.CompletedProcess[str]:
    # rootDirs puts the app's folder and the declarations' parent in one place: the app's
    # `./waystation/waystation.js` is then the declarations' waystation.d.ts.
    config = declarations.parent / "tsconfig.json"
    config.write_text(json.dumps({
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2022", "module": "esnext", "moduleResolution": "bundler",
            "lib": ["es2023", "dom", "dom.iterable"], "skipLibCheck": False,
            "rootDirs": [str(app.parent), str(declarations.parent)],
        },
        "files": [str(app)],
    }))
    return tsc("--project", str(config))


def test_typed_app_compiles_strictly_against_the_shipped_declarations(declarations: Path) -> None:
    assert_compiles(compile_app(declarations, ROOT / "examples" / "typed-usage" / "app.ts"))


def test_declarations_refuse_a_misuse(declarations: Path, tmp_path: Path) -> None:
    """The declarations carry real types: a wrong argument or a missing method does not compile."""
    wrong = tmp_path / "wrong.ts"
    wrong.write_text(
        'import { open } from "./waystation/waystation.js";\n'
        'import { WaystationApp } from "./waystation/widget.js";\n'
        'export async function f(el: WaystationApp) {\n'
        '  const app = await open({ bundel: "digits" });\n'
        '  app.cal("x");\n'
        '  const n: number = el.state;\n'
        '}\n'
    )
    done = compile_app(declarations, wrong)
    assert done.returncode != 0
    for line in ("wrong.ts(4,", "wrong.ts(5,", "wrong.ts(6,"):
        assert line in done.stdout, done.stdout
