"""The bundle registry on real SQLite (or PostgreSQL, --engine): publishing, channels, staged rollouts, rollback,
several instances on one database."""

import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.bundles.signing import public_key_b64
from waystation.device import BundleError, Manifest
from waystation.server.registry import Registry, bucket
from waystation.server.storage import Storage

from bundle_factory import make_bundle

DEVICES = [f"device-{i:04d}" for i in range(1000)]
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "data")


@pytest.fixture
def built(tmp_path_factory) -> dict[str, Path]:
    """Three versions of one bundle, each updating the one before."""
    root = tmp_path_factory.mktemp("built")
    versions = [("1.0.0", None), ("1.0.1", "1.0.0"), ("1.0.2", "1.0.1")]
    return {v: make_bundle(root, KEY, "demo", v, parent, body=b"x" * 100_000) for v, parent in versions}


def versions(registry, devices=DEVICES, channel="stable"):
    """{device: the version it is served}."""
    out = {}
    for device in devices:
        manifest = registry.resolve("demo", channel, device)
        out[device] = Manifest.from_json(manifest).version if manifest else None
    return out


def test_bucket_is_a_stable_hash_in_0_to_99():
    assert bucket("d1", "demo", "1.0.1") == bucket("d1", "demo", "1.0.1")
    assert {bucket(d, "demo", "1.0.1") for d in DEVICES} == set(range(100))
    # The rule, pinned: the first 8 bytes of SHA-256("device\0bundle\0version"), big-endian, mod 100.
    assert int.from_bytes(hashlib.sha256(b"device-0000\x00demo\x001.0.1").digest()[:8], "big") % 100 == 70
    assert [bucket(d, "demo", "1.0.1") for d in DEVICES[:5]] == [70, 7, 72, 64, 75]


def test_publish_stores_manifest_and_chunks(registry, built):
    release = registry.publish(built["1.0.0"], "stable")
    assert str(release) == "demo 1.0.0 on stable at 100%"
    assert registry.manifest("demo", "1.0.0") == (built["1.0.0"] / "manifest.json").read_bytes()
    manifest = Manifest.from_json(registry.manifest("demo", "1.0.0"))
    assert manifest.chunks()
    for sha in manifest.chunks():
        assert sha in registry.chunks
    with registry.db.transaction() as db:
        assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == len(manifest.chunks())


def test_staged_rollout_reaches_about_the_percentage_and_is_stable(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.publish(built["1.0.1"], "stable", 25)
    first = versions(registry)
    share = sum(v == "1.0.1" for v in first.values()) / len(DEVICES)
    assert 0.20 <= share <= 0.30, share
    assert set(first.values()) == {"1.0.0", "1.0.1"}
    assert versions(Registry(registry.data)) == first  # same answer every time, from a fresh connection


def test_raising_the_percentage_never_moves_a_device_back(registry, built):
    registry.publish(built["1.0.0"], "stable")
    on_new: set[str] = set()
    for percent in (5, 25, 50, 90, 100):
        registry.publish(built["1.0.1"], "stable", percent)
        now = {d for d, v in versions(registry).items() if v == "1.0.1"}
        assert on_new <= now
        assert abs(len(now) / len(DEVICES) - percent / 100) <= 0.05
        on_new = now
    assert len(on_new) == len(DEVICES)
    assert [str(r) for r in registry.releases("demo", "stable")] == ["demo 1.0.1 on stable at 100%",
                                                                     "demo 1.0.0 on stable at 100%"]


def test_a_device_outside_a_new_rollout_keeps_the_release_it_had(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.publish(built["1.0.1"], "stable", 50)
    before = versions(registry)
    registry.publish(built["1.0.2"], "stable", 10)
    after = versions(registry)
    assert all(after[d] in (before[d], "1.0.2") for d in DEVICES)


def test_first_partial_release_serves_nobody_else(registry, built):
    registry.publish(built["1.0.0"], "beta", 30)
    served = versions(registry, channel="beta")
    assert set(served.values()) == {"1.0.0", None}
    assert versions(registry, DEVICES[:10], "stable") == dict.fromkeys(DEVICES[:10])  # channels are separate


def test_rollback_returns_devices_to_the_previous_release(registry, built):
    registry.publish(built["1.0.0"], "stable")
    registry.publish(built["1.0.1"], "stable", 100)
    assert set(versions(registry).values()) == {"1.0.1"}
    withdrawn, current = registry.rollback("demo", "stable")
    assert (str(withdrawn), str(current)) == ("demo 1.0.1 on stable at 100%", "demo 1.0.0 on stable at 100%")
    assert set(versions(registry).values()) == {"1.0.0"}
    nothing = "channel 'stable' of 'demo' has only 1.0.0: there is nothing to roll back to"
    with pytest.raises(BundleError, match=re.escape(nothing)):
        registry.rollback("demo", "stable")
    registry.publish(built["1.0.1"], "stable", 100)  # a withdrawn version can be released again
    assert set(versions(registry).values()) == {"1.0.1"}


def test_published_versions_never_change(registry, built, tmp_path):
    registry.publish(built["1.0.0"], "stable")
    registry.publish(built["1.0.0"], "stable")  # the same bytes again: fine
    other = make_bundle(tmp_path, KEY, "demo", "1.0.0", body=b"changed")
    with pytest.raises(BundleError, match=re.escape("demo 1.0.0 is already published with another manifest")):
        registry.publish(other, "stable")


def test_publish_refuses_unsigned_untrusted_and_tampered_bundles(registry, built, tmp_path):
    unsigned = make_bundle(tmp_path / "u", None, "demo", "2.0.0")
    with pytest.raises(BundleError, match="the manifest is not signed"):
        registry.publish(unsigned, "stable")
    other = public_key_b64(Ed25519PrivateKey.generate())
    with pytest.raises(BundleError, match="which is not trusted"):
        registry.publish(built["1.0.0"], "stable", trusted_keys=[other])
    registry.add_version(built["1.0.0"], trusted_keys=[public_key_b64(KEY)])
    tampered = make_bundle(tmp_path / "t", KEY, "demo", "2.0.0")
    (tampered / "workflow.py").write_text("import os\n")
    with pytest.raises(BundleError, match=re.escape("file 'workflow.py' does not match its size or sha256")):
        registry.publish(tampered, "stable")
    assert registry.manifest("demo", "2.0.0") is None


@pytest.mark.parametrize(("channel", "percent", "message"), [
    ("Stable!", 10, "channel name 'Stable!' must be lowercase"),
    ("stable", 101, "rollout percentage 101 is not between 0 and 100"),
])
def test_bad_channel_or_percentage(registry, built, channel, percent, message):
    registry.add_version(built["1.0.0"])
    with pytest.raises(ValueError, match=message):
        registry.release("demo", "1.0.0", channel, percent)


def test_releasing_an_unpublished_version_is_refused(registry):
    with pytest.raises(BundleError, match=re.escape("demo 9.9.9 is not published")):
        registry.release("demo", "9.9.9", "stable")


def test_instances_releasing_and_rolling_back_together_act_one_at_a_time(registry, built):
    """Two registries on one database (two server instances), several threads each: every release
    and rollback acts on the state the one before it left, never on the same state twice."""
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        registry.add_version(built[version])
    instances = [registry, Registry(registry.storage)]
    start = threading.Barrier(8)

    def release(i: int) -> None:
        start.wait()
        instances[i % 2].release("demo", "1.0.0", "stable", 100)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(release, range(8)))
    assert [h["version"] for h in registry.history("demo")] == ["1.0.0"]  # one release, made once

    for i in range(8):  # 1.0.1, 1.0.2, 1.0.1, ...: each a release of its own
        registry.release("demo", ("1.0.1", "1.0.2")[i % 2], "stable", 100)

    def rollback(i: int) -> str:
        start.wait()
        return instances[i % 2].rollback("demo", "stable")[0].version

    with ThreadPoolExecutor(8) as pool:
        withdrawn = list(pool.map(rollback, range(8)))
    assert sorted(withdrawn) == ["1.0.1"] * 4 + ["1.0.2"] * 4
    assert [r.version for r in registry.releases("demo", "stable")] == ["1.0.0"]
    assert sum(h["rolled_back_at"] is not None for h in registry.history("demo")) == 8


def test_a_chunk_published_through_one_instance_is_served_by_another(tmp_path, built, storage_engine):
    """On PostgreSQL the chunks' bytes are in the database: an instance with an empty data folder of
    its own (another machine) serves what another published, caching the bytes in its folder."""
    if storage_engine == "sqlite":
        pytest.skip("SQLite's registry is one folder: instances share the folder, chunk files included")
    from folder_databases import database_for  # the PostgreSQL run's databases (tests/postgres_site)

    url = database_for(os.environ["WAYSTATION_TEST_POSTGRES"], tmp_path / "shared")
    publisher = Registry(Storage.at(tmp_path / "one", url))
    publisher.publish(built["1.0.0"], "stable")
    other = Registry(Storage.at(tmp_path / "two", url))
    manifest = Manifest.from_json(other.resolve("demo", "stable", "device-0001"))
    assert not (tmp_path / "two" / "chunks").exists()
    for sha in manifest.chunks():
        assert sha in other.chunks
        path = other.chunks.path(sha)
        assert path.parent == tmp_path / "two" / "chunks"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert "0" * 64 not in other.chunks
    assert not other.chunks.path("0" * 64).exists()

    # A cached file whose bytes do not hash to its name is never served: fetched again instead.
    sha = next(iter(manifest.chunks()))
    other.chunks.path(sha).write_bytes(b"not this chunk")
    again = Registry(Storage.at(tmp_path / "two", url))  # a restarted instance: nothing checked yet
    assert hashlib.sha256(again.chunks.path(sha).read_bytes()).hexdigest() == sha
