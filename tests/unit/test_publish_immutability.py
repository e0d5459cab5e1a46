"""A published version never changes: the registry and `waystation bundle publish` refuse other bytes
under a published name and version, and take the same bytes again as a no-op."""

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tiny_bundle import error_line, waystation, write_source

from waystation.bundles.builder import manifest_text
from waystation.bundles.signing import sign_manifest
from waystation.device import Manifest
from waystation.device.errors import BundleError
from waystation.server.registry import Registry

from bundle_factory import make_bundle

KEY = Ed25519PrivateKey.generate()


def rows(data: Path) -> list[tuple[str, str, str]]:
    with Registry(data).db.transaction() as db:
        return [tuple(row) for row in db.execute("SELECT bundle, version, sha256 FROM versions ORDER BY version")]


def test_other_bytes_under_a_published_version_are_refused_naming_what_differs(tmp_path):
    registry = Registry(tmp_path / "data")
    first = make_bundle(tmp_path / "a", KEY, "demo", "1.0.0")
    registry.publish(first, "stable")
    published = registry.manifest("demo", "1.0.0")
    changed = make_bundle(tmp_path / "b", KEY, "demo", "1.0.0", body=b"print('changed')\n")
    with pytest.raises(BundleError, match=r"^demo 1\.0\.0 is already published with another manifest "
                                          r"\(files that differ: workflow\.py\): published versions never change, "
                                          r"bump the version$"):
        registry.publish(changed, "beta")
    assert registry.manifest("demo", "1.0.0") == published
    assert registry.releases("demo", "beta") == []  # the refused publish released nothing


def test_the_same_content_signed_by_another_key_is_other_bytes(tmp_path):
    registry = Registry(tmp_path / "data")
    registry.publish(make_bundle(tmp_path / "a", KEY, "demo", "1.0.0"), "stable")
    resigned = make_bundle(tmp_path / "b", Ed25519PrivateKey.generate(), "demo", "1.0.0")
    with pytest.raises(BundleError, match=r"\(same content, signed or laid out otherwise\)"):
        registry.publish(resigned, "stable")


def test_other_manifest_fields_alone_are_refused(tmp_path):
    registry = Registry(tmp_path / "data")
    folder = make_bundle(tmp_path / "a", KEY, "demo", "1.0.0")
    registry.publish(folder, "stable")
    data = Manifest.from_json((folder / "manifest.json").read_bytes()).to_dict()
    data["description"] = "now with a description"
    (folder / "manifest.json").write_text(manifest_text(sign_manifest(data, KEY)))
    with pytest.raises(BundleError, match=r"\(same files, other fields\)"):
        registry.publish(folder, "stable")


def test_republishing_identical_bytes_is_a_no_op(tmp_path):
    registry = Registry(tmp_path / "data")
    folder = make_bundle(tmp_path / "a", KEY, "demo", "1.0.0")
    registry.publish(folder, "stable", 10)
    before = rows(tmp_path / "data")
    assert str(registry.publish(folder, "stable", 50)) == "demo 1.0.0 on stable at 50%"  # a rollout step
    assert rows(tmp_path / "data") == before
    sha = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert before == [("demo", "1.0.0", sha)]


def test_cli_publish_refuses_a_rebuilt_version_and_build_force_stays_local(tmp_path):
    source = write_source(tmp_path / "tiny")
    out, data = tmp_path / "out", tmp_path / "data"
    assert waystation("bundle", "build", source, "--out", out).returncode == 0
    folder = out / "tiny" / "1.0.0"
    first = waystation("bundle", "publish", folder, "--data", data)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "published tiny 1.0.0 on stable at 100%"
    again = waystation("bundle", "publish", folder, "--data", data)
    assert again.returncode == 0 and again.stdout.strip() == "published tiny 1.0.0 on stable at 100%"
    published = rows(data)

    with (source / "workflow.py").open("a") as f:
        f.write("\n# a fix, same version\n")
    rebuilt = waystation("bundle", "build", source, "--out", out, "--force")  # --force: the local build only
    assert rebuilt.returncode == 0, rebuilt.stderr
    refused = waystation("bundle", "publish", folder, "--data", data)
    assert refused.returncode == 1
    assert error_line(refused) == (
        "tiny 1.0.0 is already published with another manifest (files that differ: workflow.py): "
        "published versions never change, bump the version")
    assert rows(data) == published
    no_force = waystation("bundle", "publish", folder, "--data", data, "--force")
    assert no_force.returncode == 2 and "unrecognized arguments: --force" in no_force.stderr
