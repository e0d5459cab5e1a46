"""`waystation keys` and `waystation bundle build|diff|publish|rollback`, end to end in subprocesses."""

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from waystation.device import Manifest
from waystation.device.signature import key_id
from waystation.server.registry import bucket

ROOT = Path(__file__).resolve().parents[2]


def waystation(*args, ok=True):
    out = subprocess.run([sys.executable, "-m", "waystation", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    assert (out.returncode == 0) == ok, out.stderr
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Keys, and digits built as 2.0.0 and as 2.0.1, which differs in its workflow script only.

    (Not 1.0.0: the running server publishes the site's digits 1.0.0, signed with another key.)
    """
    tmp = tmp_path_factory.mktemp("cli")
    waystation("keys", "--out", tmp / "keys")
    source = shutil.copytree(ROOT / "models" / "digits", tmp / "src")
    toml = (source / "bundle.toml").read_text()
    (source / "bundle.toml").write_text(toml.replace('version = "1.0.0"', 'version = "2.0.0"'))
    key = tmp / "keys" / "waystation.key"
    assert waystation("bundle", "build", source, "--out", tmp / "out", "--key", key).stdout.strip() == str(
        tmp / "out" / "digits" / "2.0.0")
    toml = toml.replace('version = "1.0.0"', 'version = "2.0.1"\nparent = "2.0.0"')
    (source / "bundle.toml").write_text(toml)
    with (source / "workflow.py").open("a") as f:
        f.write("\n# 2.0.1: a comment is the only change\n")
    waystation("bundle", "build", source, "--out", tmp / "out", "--key", key)
    return tmp


def test_keys_are_written_once(work):
    listed = json.loads(waystation("keys", "--out", work / "other").stdout)
    assert listed["alg"] == "Ed25519" and len(listed["id"]) == 16
    assert (work / "other" / "waystation.key").stat().st_mode & 0o777 == 0o600
    out = waystation("keys", "--out", work / "other", ok=False)
    assert out.stderr.startswith("error: FileExistsError:") and "never overwritten" in out.stderr


def test_build_writes_signed_manifest_and_chunks(work):
    folder = work / "out" / "digits" / "2.0.1"
    manifest = Manifest.from_json((folder / "manifest.json").read_bytes())
    assert manifest.parent == "2.0.0" and manifest.signature is not None
    assert manifest.signature.key == key_id(base64.b64decode((work / "keys" / "waystation.pub").read_text()))
    for sha in manifest.chunks():
        assert (work / "out" / "chunks" / sha).is_file()


def test_diff_of_two_builds_differing_in_one_file(work):
    a, b = work / "out" / "digits" / "2.0.0", work / "out" / "digits" / "2.0.1"
    report = json.loads(waystation("bundle", "diff", a, b / "manifest.json", "--json").stdout)
    files = {f["path"]: f for f in report["files"]}
    changed = (b / "workflow.py").stat().st_size
    assert {p: f["status"] for p, f in files.items()} == {
        "workflow.py": "changed", "samples.json": "same", "classifier.onnx": "same"}
    assert files["workflow.py"]["fetch"] == changed and files["workflow.py"]["new"] == 1
    assert files["classifier.onnx"]["fetch"] == files["samples.json"]["fetch"] == 0
    total = sum(f["size"] for f in files.values())
    assert report["bytes"] == {"total": total, "fetch": changed, "reused": total - changed}
    assert report["chunks"] == {"total": 3, "shared": 2, "new": 1}
    table = waystation("bundle", "diff", a, b).stdout
    assert table.splitlines()[0].split() == ["file", "status", "size", "chunks", "shared", "new", "fetch"]
    assert f"digits 2.0.0 -> digits 2.0.1: fetch {changed / 1024:.1f} KiB of {total / 1024:.1f} KiB" in table


def test_publish_roll_out_and_roll_back_on_a_running_server(work, server):
    built, pub = work / "out" / "digits", work / "keys" / "waystation.pub"
    data = ["--data", server.data]
    assert waystation("bundle", "publish", built / "2.0.0", "--channel", "cli", *data, "--trusted-key", pub
                      ).stdout.strip() == "published digits 2.0.0 on cli at 100%"
    assert waystation("bundle", "publish", built / "2.0.1", "--channel", "cli", "--rollout", "25", *data
                      ).stdout.strip() == "published digits 2.0.1 on cli at 25%"
    inside = next(f"d{i}" for i in range(100) if bucket(f"d{i}", "digits", "2.0.1") < 25)

    def served():
        url = f"{server.url}/api/bundles/digits/channels/cli?device={inside}"
        return Manifest.from_json(httpx.get(url).content).version

    assert served() == "2.0.1"
    assert waystation("bundle", "rollback", "--channel", "cli", "--bundle", "digits", *data
                      ).stdout.strip() == "rolled back digits 2.0.1 on cli at 25%; now digits 2.0.0 on cli at 100%"
    assert served() == "2.0.0"
    out = waystation("bundle", "rollback", "--channel", "cli", "--bundle", "digits", *data, ok=False)
    assert out.stderr.strip() == ("error: bundle-error: channel 'cli' of 'digits' has only 2.0.0: "
                                  "there is nothing to roll back to")


def test_publish_refuses_a_bundle_signed_by_another_key(work, tmp_path):
    waystation("keys", "--out", tmp_path)
    out = waystation("bundle", "publish", work / "out" / "digits" / "2.0.0", "--data", tmp_path / "data",
                     "--trusted-key", tmp_path / "waystation.pub", ok=False)
    assert "which is not trusted" in out.stderr


def test_check_runs_the_smoke_check_as_a_device_would(work, tmp_path):
    built = work / "out" / "digits" / "2.0.1"
    report = json.loads(waystation("bundle", "check", built).stdout)
    assert report["classifier"]["outputs"] == {"label": [1], "probabilities": [1, 10]}
    broken = shutil.copytree(built, tmp_path / "broken")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["models"]["classifier"]["sample"]["pixels"]["shape"] = [1, 63]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    out = waystation("bundle", "check", broken, ok=False)
    assert out.stderr.startswith("error: smoke-check-failed: model 'classifier' does not answer its sample input")
