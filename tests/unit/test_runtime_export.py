"""`waystation build --runtime-only`'s choice of files (waystation.runtime_export), on copies of
the project's own page files: no build needed. The built export is driven in Chromium by
tests/e2e/test_example_app.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from waystation.runtime_export import keep_runtime, runtime_modules

ROOT = Path(__file__).resolve().parents[2]


def test_runtime_modules_follow_the_imports_and_leave_the_demo_out() -> None:
    kept = runtime_modules(ROOT / "web")
    assert {"waystation.js", "widget.js", "worker.js", "events.js", "device_state.js", "state_host.js"} <= kept
    demo = {"digits.js", "notes.js", "picks.js", "index.html", "digits.html", "widget.html", "style.css"}
    assert not kept & demo
    # Each kept module's sibling imports are kept too.
    for name in kept:
        for spec in re.findall(r"""from\s+["']\./([^"'/]+\.js)["']""", (ROOT / "web" / name).read_text()):
            assert spec in kept, f"{name} imports {spec}"


def test_a_missing_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "waystation.js").write_text('import { x } from "./gone.js";\n')
    (tmp_path / "gone.js").write_text('export { x } from "./also-gone.js";\n')
    assert runtime_modules(tmp_path, ("waystation.js",)) == {"waystation.js", "gone.js"}  # not in web: left alone
    with pytest.raises(FileNotFoundError, match=r"widget\.js is missing"):
        runtime_modules(tmp_path, ("waystation.js", "widget.js"))


def test_keep_runtime_prunes_a_site_and_rewrites_the_precache(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(ROOT / "web", site)
    shutil.copytree(ROOT / "service_worker", site, dirs_exist_ok=True)
    (site / "boot.json").write_text("{}\n")
    (site / "waystation.d.ts").write_text("export {};\n")
    (site / "digits.d.ts").write_text("export {};\n")  # a demo module's declarations go with it
    dropped = keep_runtime(ROOT, site, progress=lambda _m: None)
    assert {"index.html", "digits.js", "style.css", "widget.html"} <= set(dropped)
    left = {p.name for p in site.iterdir()}
    assert {"waystation.js", "widget.js", "worker.js", "waystation.d.ts", "boot.json", "sw.js", "sw"} <= left
    assert not left & set(dropped) and "digits.d.ts" not in left
    code = (site / "sw.js").read_text()
    urls = {e["url"] for e in json.loads(re.search(r"const PRECACHE_ENTRIES = (\[.*?\]);", code, re.S).group(1))}
    assert "widget.js" in urls and "boot.json" in urls and "index.html" not in urls
    assert all((site / url).is_file() for url in urls)
