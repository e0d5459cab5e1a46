"""`waystation build`: everything the page needs is in dist/, self-hosted, and revisioned."""

import hashlib
import json
import re
import zipfile


def test_boot_facts_point_at_real_files(site_dir):
    boot = json.loads((site_dir / "boot.json").read_text())
    assert (site_dir / boot["wheel"]).is_file()
    bundle_dirs = {p.parent.name for p in (site_dir / "bundles").glob("*/latest.json")}
    assert boot["bundles"]["digits"] == "1.0.0"
    assert set(boot["bundles"]) == bundle_dirs  # every bundle built, and only those
    for name, version in boot["bundles"].items():
        latest = json.loads((site_dir / "bundles" / name / "latest.json").read_text())
        assert latest["version"] == version
        assert (site_dir / "bundles" / name / version / "manifest.json").is_file()


def test_pyodide_lock_lists_exactly_the_shipped_wheels_with_their_hashes(site_dir):
    lock = json.loads((site_dir / "pyodide" / "pyodide-lock.json").read_text())
    assert sorted(lock["packages"]) == ["micropip", "packaging"]
    for package in lock["packages"].values():
        data = (site_dir / "pyodide" / package["file_name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == package["sha256"]


def test_only_the_needed_runtime_files_are_copied(site_dir):
    assert sorted(p.name for p in (site_dir / "ort").iterdir()) == [
        "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm",  # WebGPU's (web/execution.js)
        "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "ort.wasm.min.mjs", "ort.webgpu.min.mjs"]
    assert not list(site_dir.rglob("*.map"))


def test_waystation_wheel_holds_the_device_package(site_dir):
    (wheel,) = (site_dir / "wheels").glob("waystation-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "waystation/device/runtime.py" in names and "waystation/device/hosts/browser.py" in names


def test_service_worker_precaches_the_shell_by_revision(site_dir):
    code = (site_dir / "sw.js").read_text()
    entries = json.loads(re.search(r"const PRECACHE_ENTRIES = (\[.*?\]);", code, re.S).group(1))
    urls = {e["url"]: e["revision"] for e in entries}
    for required in ("index.html", "waystation.js", "worker.js", "pyodide/pyodide.asm.wasm",
                     "ort/ort-wasm-simd-threaded.wasm", "boot.json", "sw/precache.js"):
        assert required in urls
    assert not any(u.startswith(("bundles/", "chunks/")) for u in urls)  # bundles are cached by version
    assert not [u for u in urls if "webgpu" in u or "asyncify" in u]  # fetched only when WebGPU is chosen
    page = (site_dir / "index.html").read_bytes()
    assert urls["index.html"] == hashlib.sha256(page).hexdigest()[:20]


def test_no_file_is_loaded_from_another_origin(site_dir):
    files = [*site_dir.glob("*.js"), *site_dir.glob("*.html"), *site_dir.glob("sw/*.js")]
    assert {"index.html", "waystation.js", "worker.js", "precache.js"} <= {p.name for p in files}
    for path in files:
        assert not re.search(r"https?://(?!127\.0\.0\.1)", path.read_text()), path


def test_bundles_are_signed_by_the_key_boot_json_trusts(site_dir):
    from waystation.device import Manifest
    from waystation.device.signature import verify_manifest

    keys = json.loads((site_dir / "boot.json").read_text())["trustedKeys"]
    assert [sorted(k) for k in keys] == [["alg", "id", "publicKey"]] and keys[0]["alg"] == "Ed25519"
    manifests = sorted((site_dir / "bundles").glob("*/*/manifest.json"))
    assert {p.parent.parent.name for p in manifests} >= {"digits", "minilm", "picks"}
    for path in manifests:
        manifest = Manifest.from_json(path.read_bytes())
        assert manifest.signature.key == keys[0]["id"]
        verify_manifest(manifest, [k["publicKey"] for k in keys])


def test_every_chunk_of_every_bundle_is_in_dist_chunks(site_dir):
    for path in (site_dir / "bundles").glob("*/*/manifest.json"):
        for entry in json.loads(path.read_text())["files"]:
            data = b"".join((site_dir / "chunks" / sha).read_bytes() for sha, _ in entry["chunks"])
            assert data == (path.parent / entry["path"]).read_bytes()


def test_service_worker_modules_import_only_relative_modules_that_exist(site_dir):
    # A module service worker resolves no bare specifiers ("idb"): every import is a relative
    # URL to a file in the site, precached with the shell.
    code = (site_dir / "sw.js").read_text()
    urls = {e["url"] for e in json.loads(re.search(r"const PRECACHE_ENTRIES = (\[.*?\]);", code, re.S).group(1))}
    for path in [site_dir / "sw.js", *(site_dir / "sw").rglob("*.js")]:
        for spec in re.findall(r"^(?:import|export)\b[^;]*?\bfrom\s+[\"']([^\"']+)[\"']", path.read_text(), re.M):
            assert spec.startswith(("./", "../")), f"{path.name} imports {spec!r}"
            target = (path.parent / spec).resolve()
            assert target.is_file(), f"{path.name} imports {spec}, which is not in the site"
            assert target.relative_to(site_dir.resolve()).as_posix() in urls
    assert "sw/vendor/idb.js" in urls
