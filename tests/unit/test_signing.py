"""Signed manifests: keys, signing at build time, refusal of anything not signed by a trusted key."""

import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from waystation.bundles.builder import build_bundle, manifest_text
from waystation.bundles.signing import generate_keys, load_private_key, sign_manifest
from waystation.device import App, BundleError, Manifest
from waystation.device.manifest import canonical_json
from waystation.device.signature import key_id, verify_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    private, public = generate_keys(tmp_path_factory.mktemp("keys"))
    return private, public.read_text().strip()


@pytest.fixture(scope="module")
def signed(keys, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    return build_bundle(ROOT / "models" / "digits", out, progress=lambda _m: None, key=load_private_key(keys[0]))


def open_app(folder, trusted):
    app = asyncio.run(App.open(folder, trusted_keys=trusted))
    app.close()
    return app


def rewrite(folder: Path, change) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    change(data)
    (folder / "manifest.json").write_text(manifest_text(data))


def test_key_pair_files(keys, tmp_path):
    private, public = generate_keys(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600
    raw = base64.b64decode(public.read_text().strip(), validate=True)
    assert len(raw) == 32
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(FileExistsError, match="never overwritten"):
        generate_keys(tmp_path)


def test_good_signature_verifies(signed, keys):
    manifest = Manifest.from_json((signed / "manifest.json").read_bytes())
    assert manifest.signature.key == key_id(base64.b64decode(keys[1]))
    assert open_app(signed, [keys[1]]).version == "1.0.0"
    verify_manifest(manifest, [base64.b64decode(keys[1])])  # raw bytes do too


def test_signature_covers_values_not_layout(signed, keys, tmp_path):
    copy = shutil.copytree(signed, tmp_path / "copy")
    data = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(dict(reversed(data.items())), indent=4))
    open_app(copy, [keys[1]])


def test_tampered_manifest_is_refused(signed, keys, tmp_path):
    copy = shutil.copytree(signed, tmp_path / "copy")
    rewrite(copy, lambda m: m.update(description="something else"))
    with pytest.raises(BundleError, match=r"signature does not verify with key .*: the manifest was changed after it was signed"):
        open_app(copy, [keys[1]])


def test_wrong_key_is_refused(signed, tmp_path):
    _, other = generate_keys(tmp_path)
    other_id = key_id(base64.b64decode(other.read_text().strip()))
    with pytest.raises(BundleError, match=f"signed by key [0-9a-f]{{16}}, which is not trusted \\(trusted: {other_id}\\)"):
        open_app(signed, [other.read_text()])


def test_signature_by_an_untrusted_key_with_a_trusted_id_is_refused(signed, keys, tmp_path):
    copy = shutil.copytree(signed, tmp_path / "copy")
    forger = load_private_key(generate_keys(tmp_path)[0])
    data = json.loads((copy / "manifest.json").read_text())
    forged = sign_manifest(data, forger)
    forged["signature"]["key"] = data["signature"]["key"]
    (copy / "manifest.json").write_text(json.dumps(forged))
    with pytest.raises(BundleError, match="does not verify"):
        open_app(copy, [keys[1]])


def test_missing_signature_is_refused(signed, keys, tmp_path):
    copy = shutil.copytree(signed, tmp_path / "copy")
    rewrite(copy, lambda m: m.pop("signature"))
    with pytest.raises(BundleError, match=re.escape("bundle 'digits' 1.0.0 is not signed, and only signed bundles are trusted")):
        open_app(copy, [keys[1]])
    assert open_app(copy, None).version == "1.0.0"  # no trusted keys given: no check (the browser's case)


def test_bad_trusted_key_is_named(signed):
    with pytest.raises(BundleError, match="trusted key 'nope' is not a raw Ed25519 public key"):
        open_app(signed, ["nope"])


def test_javascript_reproduces_the_signed_bytes(signed):
    """What the browser does before WebCrypto's verify: JSON.stringify of a key-sorted copy."""
    script = """
      const fs = require("fs");
      const sorted = (v) => Array.isArray(v) ? v.map(sorted) : v && typeof v === "object"
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])])) : v;
      const manifest = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
      delete manifest.signature;
      process.stdout.write(Buffer.from(JSON.stringify(sorted(manifest)), "utf8"));
    """
    out = subprocess.run(["node", "-e", script, str(signed / "manifest.json")], capture_output=True, check=True)
    data = json.loads((signed / "manifest.json").read_text())
    assert out.stdout == canonical_json({k: v for k, v in data.items() if k != "signature"})
    assert out.stdout == Manifest.from_dict(data).payload


def test_device_package_imports_without_cryptography():
    code = "import sys, waystation.device, waystation.device.signature; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
