"""Assemble the static site (dist/): page, worker, service worker, runtimes, wheels, bundles.

What goes in and from where is declared in `build/site.toml`; this module only follows it.
Everything the page needs is self-hosted here: nothing is loaded from a CDN at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .bundles._progress import BarFactory, no_bar
from .bundles.builder import build_bundle
from .bundles.pypi_assets import fetch_wheel
from .bundles.signing import dev_key, load_private_key, trusted_key_entry
from .bundles.source import BundleSource
from .pyodide_snapshot import make_snapshot
from .site_types import write_declarations

__all__ = ["SHELL_EXCLUDE", "build_site", "find_project_root", "write_precache"]

# Not part of the precached app shell: bundles and their chunks have their own cache; and
# onnxruntime-web's WebGPU build (27 MB), which a worker imports only when web/execution.js
# chooses WebGPU, so that a device on WASM never downloads it. Offline and never fetched, the
# worker runs the bundle on WASM instead, and says so in app.info.executionReason. And the fleet
# dashboard with its charts: an operator's page, always from the network, no part of the offline app.
SHELL_EXCLUDE = ("bundles/", "chunks/", "ort/ort.webgpu.", "ort/ort-wasm-simd-threaded.asyncify.",
                 "dashboard.", "vendor/uplot.")
PRECACHE_PLACEHOLDER = "self.__WAYSTATION_PRECACHE"

Progress = Callable[[str], None]


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder above `start` (default: cwd) that holds build/site.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "build" / "site.toml").is_file():
            return folder
    raise FileNotFoundError(f"no build/site.toml in {here} or above: run from a Waystation project")


def build_site(
    root: Path, out: Path, progress: Progress = print, *, key: Path | None = None, bar: BarFactory = no_bar
) -> dict[str, Any]:
    """Build the whole site into `out` (replaced); return the boot facts written to boot.json.

    Bundles are signed with the private key at `key`, or with the development key kept in
    build/.cache/keys; boot.json lists the matching public key as trusted.
    """
    signing_key = load_private_key(key) if key is not None else dev_key()
    config = tomllib.loads((root / "build" / "site.toml").read_text())
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    _copy_tree(root / config["web"]["from"], staging)
    write_declarations(root, root / config["web"]["from"], staging)  # waystation.d.ts, widget.d.ts, ...
    pyodide_version = _copy_pyodide(root, config["pyodide"], staging, progress)
    _copy_files(root / config["ort"]["from"], config["ort"]["files"], staging / config["ort"]["to"])
    _copy_vendor(root, config.get("vendor", []), staging)
    _bundle_modules(root, config.get("modules", []), staging)
    wheel = _build_wheel(root, staging / "wheels", progress)
    progress("making the Pyodide start-up snapshot")
    snapshot = make_snapshot(root, staging / config["pyodide"]["to"], wheel)
    bundles = _build_bundles(root / config["bundles"]["from"], staging, config["bundles"]["to"], progress,
                             key=signing_key, bar=bar)
    boot = {
        "waystation": __version__,
        "pyodide": pyodide_version,
        "ort": _npm_version(root / "node_modules" / "onnxruntime-web"),
        "wheel": f"wheels/{wheel.name}",
        # Absent when Node could not make one: the worker then boots Pyodide from scratch.
        "snapshot": snapshot.relative_to(staging).as_posix() if snapshot else None,
        "bundles": bundles,
        "trustedKeys": [trusted_key_entry(signing_key)],
    }
    (staging / "boot.json").write_text(json.dumps(boot, indent=2) + "\n")
    entries = _write_service_worker(root / config["service_worker"]["from"], config["service_worker"], staging)
    progress(f"precache: {len(entries)} app-shell files")

    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    progress(f"site built in {out}")
    return boot


def _copy_tree(src: Path, dst: Path) -> None:
    # Dotfiles (.env, .git, editor swap files) are never part of the site, at any depth.
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.test.js"))


def _copy_files(src: Path, names: list[str], dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name} is missing: run `npm ci` first")
        shutil.copyfile(src / name, dst / name)


def _copy_vendor(root: Path, entries: list[dict[str, str]], out: Path) -> None:
    """Single files from npm packages, each to its place in the site."""
    for entry in entries:
        src, dst = root / entry["from"], out / entry["to"]
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing: run `npm ci` first")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _bundle_modules(root: Path, entries: list[dict[str, str]], out: Path) -> None:
    """ES modules of npm packages, each bundled into one file by the pinned esbuild."""
    esbuild = root / "node_modules" / ".bin" / "esbuild"
    for entry in entries:
        if not esbuild.is_file():
            raise FileNotFoundError(f"{esbuild} is missing: run `npm ci` first")
        dst = out / entry["to"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(esbuild), str(root / entry["entry"]), "--bundle", "--format=esm", "--platform=browser",
             "--target=es2022", "--minify", "--legal-comments=eof", "--log-level=warning", f"--outfile={dst}"],
            check=True, cwd=root,
        )


def _copy_pyodide(root: Path, config: dict[str, Any], out: Path, progress: Progress) -> str:
    src, dst = root / config["from"], out / config["to"]
    _copy_files(src, config["files"], dst)
    upstream = json.loads((src / "pyodide-lock.json").read_text())
    packages = {}
    for wheel in config.get("wheels", []):
        progress(f"pyodide package {wheel['file']}")
        path = fetch_wheel(wheel["file"], wheel["sha256"], python_version="3.14")
        shutil.copyfile(path, dst / wheel["file"])
        entry = dict(upstream["packages"][wheel["name"]])
        entry.update(file_name=wheel["file"], sha256=wheel["sha256"], version=wheel["file"].split("-")[1])
        packages[wheel["name"]] = entry
    # A lock file listing only what we ship: loadPackage("numpy") then fails at once, clearly,
    # instead of reaching for a CDN that is not there.
    lock = {"info": upstream["info"], "packages": packages}
    (dst / "pyodide-lock.json").write_text(json.dumps(lock, indent=1) + "\n")
    return _npm_version(src)


def _npm_version(package_dir: Path) -> str:
    return str(json.loads((package_dir / "package.json").read_text())["version"])


def _build_wheel(root: Path, dst: Path, progress: Progress) -> Path:
    """The waystation package as a pure wheel, for the worker to install into Pyodide."""
    progress("building the waystation wheel")
    dst.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # reproducible zip timestamps
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dst), str(root)],
        check=True,
        env=env,
    )
    (wheel,) = dst.glob("waystation-*.whl")
    return wheel


def _build_bundles(src: Path, site: Path, to: str, progress: Progress, **options: Any) -> dict[str, str]:
    """Every bundle source under `src` into site/TO/NAME/VERSION, their chunks into site/chunks."""
    built = {}
    for source in sorted(p.parent for p in src.glob("*/bundle.toml")):
        for variant in [None, *BundleSource.load(source).variants]:
            folder = build_bundle(source, site / to, progress, chunk_store=site / "chunks", variant=variant, **options)
            built[folder.parent.name] = folder.name
    return built


def _write_service_worker(src: Path, config: dict[str, Any], out: Path) -> list[dict[str, str]]:
    """Copy the service worker and its modules, then inject the precache list into its entry."""
    _copy_tree(src, out)
    return _inject_precache(src / config["entry"], out, config["entry"])


def write_precache(root: Path, site: Path) -> list[dict[str, str]]:
    """Rewrite the service worker of the built `site` with the precache list of its files as they are now.

    For a site whose files changed after `waystation build` (an app update): the changed files get
    new revisions, so a browser that has the old shell refetches those alone. The pristine service
    worker comes from the project at `root`. Returns the entries, [{url, revision}, ...].

        write_precache(find_project_root(), Path("dist"))
    """
    config = tomllib.loads((root / "build" / "site.toml").read_text())["service_worker"]
    return _inject_precache(root / config["from"] / config["entry"], site, config["entry"])


def _inject_precache(source: Path, site: Path, entry: str) -> list[dict[str, str]]:
    entries = [
        {"url": path.relative_to(site).as_posix(), "revision": _file_hash(path)}
        for path in sorted(site.rglob("*"))
        if path.is_file() and not path.relative_to(site).as_posix().startswith((*SHELL_EXCLUDE, entry))
    ]
    code = source.read_text()
    if PRECACHE_PLACEHOLDER not in code:
        raise ValueError(f"{source} lacks the placeholder {PRECACHE_PLACEHOLDER}")
    (site / entry).write_text(code.replace(PRECACHE_PLACEHOLDER, json.dumps(entries, indent=0), 1))
    return entries


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:20]
