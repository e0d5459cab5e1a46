"""The check-in of `waystation serve` on 127.0.0.1 (GET /api/bundles/NAME/channels/CHANNEL/status):
the version per device, the revoked versions, the remote-logging share by device bucket."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.server.bundles_api import CHECK_AFTER_SECONDS
from waystation.server.registry import Registry, bucket, logging_bucket

from bundle_factory import make_bundle
from server_process import Server

KEY = Ed25519PrivateKey.generate()
DEVICES = [f"d{i}" for i in range(300)]


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(site, tmp_path_factory.mktemp("data")).start()
    yield srv
    srv.stop()


@pytest.fixture
def bundle(server, tmp_path, request) -> tuple[Registry, str]:
    """A bundle of this test's own in the running server's registry: 1.0.0 on stable, 1.0.1 published only."""
    registry = Registry(server.data)
    name = "checkin_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    registry.publish(make_bundle(tmp_path, KEY, name, "1.0.0"), "stable")
    registry.add_version(make_bundle(tmp_path, KEY, name, "1.0.1", "1.0.0"))
    return registry, name


def status(server, bundle, device, channel="stable"):
    return httpx.get(f"{server.url}/api/bundles/{bundle}/channels/{channel}/status", params={"device": device})


def sha(registry, bundle, version):
    return hashlib.sha256(registry.manifest(bundle, version)).hexdigest()


def test_each_device_is_told_its_version_and_the_manifests_sha256(server, bundle):
    registry, name = bundle
    registry.release(name, "1.0.1", "stable", 30)
    inside = next(d for d in DEVICES if bucket(d, name, "1.0.1") < 30)
    outside = next(d for d in DEVICES if bucket(d, name, "1.0.1") >= 30)
    for device, version in ((inside, "1.0.1"), (outside, "1.0.0")):
        response = status(server, name, device)
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        assert response.json() == {"bundle": name, "channel": "stable", "version": version,
                                   "sha256": sha(registry, name, version), "revoked": [], "withdrawn": [],
                                   "logging": None, "checkAfterSeconds": CHECK_AFTER_SECONDS}


def test_a_revoked_version_is_listed_and_never_the_answer(server, bundle):
    registry, name = bundle
    registry.release(name, "1.0.1", "stable", 100)
    assert status(server, name, "d1").json()["version"] == "1.0.1"
    registry.revoke(name, "1.0.1", "broken")
    answer = status(server, name, "d1").json()
    assert (answer["version"], answer["sha256"], answer["revoked"]) == ("1.0.0", sha(registry, name, "1.0.0"), ["1.0.1"])
    nobody = status(server, name, "d1", channel="nowhere").json()  # no release there: no version, still the revoked list
    assert (nobody["version"], nobody["sha256"], nobody["revoked"]) == (None, None, ["1.0.1"])


def test_a_rolled_back_or_halted_version_is_listed_as_withdrawn_until_released_again(server, bundle):
    registry, name = bundle
    registry.release(name, "1.0.1", "stable", 100)
    registry.rollback(name, "stable")
    answer = status(server, name, "d1").json()
    assert (answer["version"], answer["withdrawn"], answer["revoked"]) == ("1.0.0", ["1.0.1"], [])
    assert status(server, name, "d1", channel="nowhere").json()["withdrawn"] == []  # per channel
    registry.release(name, "1.0.1", "stable", 100)  # released again: served, no longer withdrawn
    assert (status(server, name, "d1").json()["version"], status(server, name, "d1").json()["withdrawn"]) == ("1.0.1", [])


def test_remote_logging_reaches_the_devices_inside_its_share(server, bundle):
    registry, name = bundle
    registry.set_logging(name, "stable", 25, "info")
    registry.set_logging(name, "beta", 100, "error")  # another channel's share is its own
    told = {d for d in DEVICES if status(server, name, d).json()["logging"] == {"level": "info"}}
    assert told == {d for d in DEVICES if logging_bucket(d, name) < 25}
    assert 0.15 <= len(told) / len(DEVICES) <= 0.35
    registry.set_logging(name, "stable", 0, "info")
    assert all(status(server, name, d).json()["logging"] is None for d in sorted(told)[:10])


@pytest.mark.parametrize(("query", "code", "message"), [
    ({}, 400, "?device= must be a device id"),
    ({"device": "a b"}, 400, "?device= must be a device id"),
    ({"device": "d1", "bundle": "nope"}, 404, "no version of bundle 'nope' is published"),
])
def test_checkin_errors(server, bundle, query, code, message):
    query = dict(query)
    bundle = query.pop("bundle", bundle[1])
    response = httpx.get(f"{server.url}/api/bundles/{bundle}/channels/stable/status", params=query)
    assert response.status_code == code and message in response.json()["error"]
