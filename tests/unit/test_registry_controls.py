"""The registry's release controls on real SQLite: revoke, halt, halt rules on a release, history,
remote logging shares, guarded rollouts, and an old registry file gaining the new columns."""

import re
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.device import BundleError, Manifest
from waystation.server.registry import Registry, bucket, logging_bucket

from bundle_factory import make_bundle

DEVICES = [f"device-{i:04d}" for i in range(400)]
KEY = Ed25519PrivateKey.generate()

# The registry's schema before revoke, halt and logging existed, as an earlier Waystation made it.
OLD_SCHEMA = """
CREATE TABLE versions (bundle TEXT NOT NULL, version TEXT NOT NULL, parent TEXT, manifest BLOB NOT NULL,
                       sha256 TEXT NOT NULL, published_at TEXT NOT NULL, PRIMARY KEY (bundle, version));
CREATE TABLE chunks (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE releases (id INTEGER PRIMARY KEY AUTOINCREMENT, bundle TEXT NOT NULL, channel TEXT NOT NULL,
                       version TEXT NOT NULL, percent INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
                       created_at TEXT NOT NULL, updated_at TEXT NOT NULL, rolled_back_at TEXT,
                       FOREIGN KEY (bundle, version) REFERENCES versions (bundle, version));
"""


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "data")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("built")
    versions = [("1.0.0", None), ("1.0.1", "1.0.0"), ("1.0.2", "1.0.1")]
    return {v: make_bundle(root, KEY, "demo", v, parent) for v, parent in versions}


def served(registry, channel="stable", devices=DEVICES):
    out = {}
    for device in devices:
        manifest = registry.resolve("demo", channel, device)
        out[device] = Manifest.from_json(manifest).version if manifest else None
    return out


def test_a_revoked_version_is_never_served_and_its_devices_get_the_release_before(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.publish(built["1.0.1"], "stable", 50)
    registry.publish(built["1.0.1"], "beta")
    before = served(registry)
    assert set(before.values()) == {"1.0.0", "1.0.1"}
    registry.revoke("demo", "1.0.1", reason="wrong labels")
    assert set(served(registry).values()) == {"1.0.0"}
    assert set(served(registry, "beta").values()) == {None}  # nothing else on beta: no answer, never the revoked one
    assert registry.resolve_version("demo", "stable", "device-0001") == "1.0.0"
    assert registry.revoked("demo") == ["1.0.1"]
    [v1, v0] = registry.versions("demo")  # newest first
    assert (v1["version"], v1["revoke_reason"], v1["parent"]) == ("1.0.1", "wrong labels", "1.0.0")
    assert v1["revoked_at"] and (v0["version"], v0["revoked_at"]) == ("1.0.0", None)


def test_revoke_names_what_is_wrong_and_a_revoked_version_is_not_released_again(registry, built):
    with pytest.raises(BundleError, match=re.escape("demo 1.0.0 is not published: there is nothing to revoke")):
        registry.revoke("demo", "1.0.0")
    registry.publish(built["1.0.0"], "stable")
    registry.revoke("demo", "1.0.0")
    first = registry.versions("demo")[0]["revoked_at"]
    registry.revoke("demo", "1.0.0", reason="again")  # idempotent: keeps the first time, takes the reason
    again = registry.versions("demo")[0]
    assert (again["revoked_at"], again["revoke_reason"]) == (first, "again")
    with pytest.raises(BundleError, match=re.escape("demo 1.0.0 was revoked (again): a revoked version is never released")):
        registry.release("demo", "1.0.0", "stable")


def test_halt_withdraws_a_release_and_records_why(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.add_version(built["1.0.1"])
    registry.release("demo", "1.0.1", "stable", 50, halt_if="errors>1%")
    halted, current = registry.halt("demo", "stable", "1.0.1", "halted: error rate 50.0% > 1% over 12 devices")
    assert (str(halted), str(current)) == ("demo 1.0.1 on stable at 50%", "demo 1.0.0 on stable at 100%")
    assert set(served(registry).values()) == {"1.0.0"}
    newest, oldest = registry.history("demo")
    assert set(newest) == {"id", "channel", "version", "percent", "created_at", "updated_at", "rolled_back_at",
                           "halted_at", "halt_reason", "halt_if"}
    assert (newest["version"], newest["halt_if"], newest["halt_reason"]) == (
        "1.0.1", "errors>1%", "halted: error rate 50.0% > 1% over 12 devices")
    assert newest["halted_at"] == newest["rolled_back_at"] is not None
    assert (oldest["version"], oldest["halted_at"], oldest["rolled_back_at"]) == ("1.0.0", None, None)
    with pytest.raises(BundleError, match=re.escape("has no release of 1.0.1 in force: nothing to halt")):
        registry.halt("demo", "stable", "1.0.1", "again")
    with pytest.raises(BundleError, match=re.escape("has no release before 1.0.0: there is nothing to go back to")):
        registry.halt("demo", "stable", "1.0.0", "the only one")


def test_halt_rules_stay_with_a_release_when_only_its_percentage_changes(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.add_version(built["1.0.1"])
    registry.release("demo", "1.0.1", "stable", 10, halt_if="p95>1.5x")
    registry.release("demo", "1.0.1", "stable", 50)
    assert [(h["version"], h["percent"], h["halt_if"]) for h in registry.history("demo")] == [
        ("1.0.1", 50, "p95>1.5x"), ("1.0.0", 100, None)]
    registry.release("demo", "1.0.1", "stable", 60, halt_if="")
    assert registry.history("demo")[0]["halt_if"] is None


def test_guarded_rollouts_are_the_releases_in_force_with_rules_and_somewhere_to_go_back_to(registry, built):
    registry.add_version(built["1.0.0"])
    registry.release("demo", "1.0.0", "beta", 100, halt_if="errors>1%")  # nothing before it: not guarded
    registry.publish(built["1.0.0"], "stable")
    registry.add_version(built["1.0.1"])
    registry.release("demo", "1.0.1", "stable", 25, halt_if="errors>1%,devices>=3")
    assert registry.guarded_rollouts() == [{"bundle": "demo", "channel": "stable", "version": "1.0.1", "percent": 25,
                                            "halt_if": "errors>1%,devices>=3", "previous": "1.0.0"}]
    registry.halt("demo", "stable", "1.0.1", "halted: test")
    assert registry.guarded_rollouts() == []


def test_a_revoked_previous_release_is_not_where_a_halt_goes_back_to(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.publish(built["1.0.1"], "stable")
    registry.add_version(built["1.0.2"])
    registry.release("demo", "1.0.2", "stable", 50, halt_if="errors>1%")
    registry.revoke("demo", "1.0.1")
    assert [g["previous"] for g in registry.guarded_rollouts()] == ["1.0.0"]


def test_logging_share_per_channel(registry, built):
    with pytest.raises(BundleError, match=re.escape("no version of 'demo' is published")):
        registry.set_logging("demo", "stable", 10, "info")
    registry.publish(built["1.0.0"], "stable")
    assert registry.logging("demo", "stable") is None and not registry.logging_on("demo")
    registry.set_logging("demo", "stable", 10, "info")
    registry.set_logging("demo", "stable", 20, "warning")  # changed in place
    assert registry.logging("demo", "stable") == {"share": 20, "level": "warning"}
    assert registry.logging("demo", "beta") is None and registry.logging_on("demo")
    registry.set_logging("demo", "stable", 0, "info")
    assert registry.logging("demo", "stable") is None and not registry.logging_on("demo")
    with pytest.raises(ValueError, match=re.escape("log level 'loud' is not one of debug, info, warning, error")):
        registry.set_logging("demo", "stable", 10, "loud")
    with pytest.raises(ValueError, match=re.escape("logging share 101 is not a percentage between 0 and 100")):
        registry.set_logging("demo", "stable", 101, "info")


def test_logging_bucket_is_one_per_device_and_bundle_whatever_the_version():
    # The rule, pinned: the rollout bucket with "logging" in the version's place.
    assert logging_bucket("device-0001", "demo") == bucket("device-0001", "demo", "logging")
    assert {logging_bucket(f"d{i}", "demo") for i in range(1000)} == set(range(100))


def test_bundles_lists_every_published_bundle(registry, built, tmp_path):
    assert registry.bundles() == []
    registry.add_version(built["1.0.0"])
    registry.add_version(make_bundle(tmp_path, KEY, "another", "0.1.0"))
    assert registry.bundles() == ["another", "demo"]


def test_an_old_registry_file_opens_and_gains_the_new_columns(tmp_path, built, storage_engine):
    if storage_engine != "sqlite":
        pytest.skip("a SQLite file made by an earlier Waystation: PostgreSQL registries start with every column")
    data = tmp_path / "old"
    data.mkdir()
    with sqlite3.connect(data / "registry.sqlite3") as db:
        db.executescript(OLD_SCHEMA)
    old = Registry(data)
    old.publish(built["1.0.0"], "stable")
    old.publish(built["1.0.1"], "stable", 50)
    with sqlite3.connect(data / "registry.sqlite3") as db:
        db.execute("DROP TABLE logging")  # as if the old file had only its three tables, with rows in them
        db.execute("DROP TABLE schema_migrations")  # and no record of migrations, which came later still
        for table, column in [("versions", "revoked_at"), ("versions", "revoke_reason"), ("releases", "halted_at"),
                              ("releases", "halt_reason"), ("releases", "halt_if")]:
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    reopened = Registry(data)
    assert [str(r) for r in reopened.releases("demo", "stable")] == ["demo 1.0.1 on stable at 50%",
                                                                     "demo 1.0.0 on stable at 100%"]
    reopened.revoke("demo", "1.0.1", "bad")
    reopened.set_logging("demo", "stable", 5, "error")
    assert reopened.revoked("demo") == ["1.0.1"] and reopened.logging("demo", "stable") == {"share": 5, "level": "error"}
    assert [h["halt_if"] for h in reopened.history("demo")] == [None, None]
    Registry(data)  # opening it again changes nothing
