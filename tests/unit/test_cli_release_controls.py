"""`waystation bundle publish --halt-if`, `bundle revoke` and `bundle logging`, in subprocesses, on a
registry under a fresh --data folder read back with Registry."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.server.registry import Registry

from bundle_factory import make_bundle

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()


def waystation(*args, ok=True):
    out = subprocess.run([sys.executable, "-m", "waystation", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    assert (out.returncode == 0) == ok, out.stderr
    return out


@pytest.fixture
def built(tmp_path) -> dict[str, Path]:
    return {v: make_bundle(tmp_path / "built", KEY, "ctl", v, parent) for v, parent in (("1.0.0", None), ("1.0.1", "1.0.0"))}


def test_publish_with_halt_rules_guards_the_release(built, tmp_path):
    data = tmp_path / "data"
    waystation("bundle", "publish", built["1.0.0"], "--data", data)
    out = waystation("bundle", "publish", built["1.0.1"], "--rollout", "50", "--halt-if", "errors>1%,p95>1.5x,devices>=10",
                     "--data", data)
    assert out.stdout.strip() == "published ctl 1.0.1 on stable at 50%, halted if errors>1%,p95>1.5x,devices>=10"
    assert Registry(data).guarded_rollouts() == [{"bundle": "ctl", "channel": "stable", "version": "1.0.1", "percent": 50,
                                                  "halt_if": "errors>1%,p95>1.5x,devices>=10", "previous": "1.0.0"}]


def test_malformed_halt_rules_publish_nothing(built, tmp_path):
    data = tmp_path / "data"
    out = waystation("bundle", "publish", built["1.0.0"], "--halt-if", "errors>lots", "--data", data, ok=False)
    assert out.stderr.startswith("error: ValueError: --halt-if 'errors>lots': halt rule 'errors>lots' is not one of")
    assert Registry(data).bundles() == []


def test_revoke_stops_serving_a_version(built, tmp_path):
    data = tmp_path / "data"
    waystation("bundle", "publish", built["1.0.0"], "--data", data)
    waystation("bundle", "publish", built["1.0.1"], "--data", data)
    out = waystation("bundle", "revoke", "ctl", "1.0.1", "--reason", "wrong labels", "--data", data)
    assert out.stdout.strip() == ("revoked ctl 1.0.1 (wrong labels): no device is served it again, "
                                  "and devices holding it stop using it at their next check-in")
    registry = Registry(data)
    assert registry.revoked("ctl") == ["1.0.1"] and registry.resolve_version("ctl", "stable", "d1") == "1.0.0"
    out = waystation("bundle", "revoke", "ctl", "9.9.9", "--data", data, ok=False)
    assert out.stderr.strip() == "error: bundle-error: ctl 9.9.9 is not published: there is nothing to revoke"
    out = waystation("bundle", "publish", built["1.0.1"], "--data", data, ok=False)
    assert re.search(r"ctl 1\.0\.1 was revoked \(wrong labels\): a revoked version is never released again", out.stderr)


def test_logging_share_on_and_off(built, tmp_path):
    data = tmp_path / "data"
    waystation("bundle", "publish", built["1.0.0"], "--data", data)
    out = waystation("bundle", "logging", "ctl", "--channel", "stable", "--share", "10", "--level", "info", "--data", data)
    assert out.stdout.strip() == "remote logging of ctl on stable: 10% of devices send info lines and above"
    assert Registry(data).logging("ctl", "stable") == {"share": 10, "level": "info"}
    out = waystation("bundle", "logging", "ctl", "--share", "0", "--data", data)
    assert out.stdout.strip() == "remote logging of ctl on stable: off"
    assert Registry(data).logging("ctl", "stable") is None
    out = waystation("bundle", "logging", "ctl", "--share", "150", "--data", data, ok=False)
    assert out.stderr.strip() == "error: ValueError: logging share 150 is not a percentage between 0 and 100"
    out = waystation("bundle", "logging", "nope", "--share", "5", "--data", data, ok=False)
    assert "no version of 'nope' is published" in out.stderr
