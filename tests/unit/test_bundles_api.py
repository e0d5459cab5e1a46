"""The bundle API of `waystation serve` on 127.0.0.1: channel manifests and immutable chunks."""

import hashlib
import json
import random

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.device import Manifest
from waystation.server.registry import Registry, bucket

from bundle_factory import make_bundle

KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def published(server, tmp_path_factory):
    """`api-demo` 1.0.0 on stable, 1.0.1 rolled out to 25%, in the running server's data folder."""
    root = tmp_path_factory.mktemp("built")
    registry = Registry(server.data)
    for version, parent, percent in (("1.0.0", None, 100), ("1.0.1", "1.0.0", 25)):
        registry.publish(make_bundle(root, KEY, "api-demo", version, parent, body=b"y" * 200_000), "stable", percent)
    return registry


def channel(server, device, **headers):
    return httpx.get(f"{server.url}/api/bundles/api-demo/channels/stable", params={"device": device}, headers=headers)


def test_a_device_gets_the_manifest_of_its_release(server, published):
    inside = next(f"d{i}" for i in range(1000) if bucket(f"d{i}", "api-demo", "1.0.1") < 25)
    outside = next(f"d{i}" for i in range(1000) if bucket(f"d{i}", "api-demo", "1.0.1") >= 25)
    for device, version in ((inside, "1.0.1"), (outside, "1.0.0")):
        response = channel(server, device, **{"accept-encoding": "identity"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == published.manifest("api-demo", version)
        assert Manifest.from_json(response.content).version == version
        assert response.headers["etag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["cross-origin-embedder-policy"] == "require-corp"


def test_etag_revalidation_answers_304(server, published):
    first = channel(server, "d1")
    again = channel(server, "d1", **{"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == first.headers["etag"]


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/api/bundles/api-demo/channels/stable", 400, "?device= must be a device id"),
    ("/api/bundles/api-demo/channels/stable?device=a%20b", 400, "?device= must be a device id"),
    ("/api/bundles/api-demo/channels/nightly?device=d1", 404, "no release of 'api-demo' on channel 'nightly'"),
    ("/api/bundles/nope/channels/stable?device=d1", 404, "no release of 'nope'"),
])
def test_channel_errors(server, published, path, status, message):
    response = httpx.get(server.url + path)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_chunks_are_immutable_and_content_addressed(server, published):
    manifest = Manifest.from_json(published.manifest("api-demo", "1.0.1"))
    for sha in manifest.chunks():
        response = httpx.get(f"{server.url}/chunks/{sha}", headers={"accept-encoding": "identity"})
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == sha
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["etag"] == f'"{sha}"'
        assert response.headers["cross-origin-resource-policy"] == "same-origin"
        assert "content-encoding" not in response.headers


def test_compressible_chunks_and_manifests_travel_gzipped(server, published):
    sha, size = next(iter(Manifest.from_json(published.manifest("api-demo", "1.0.1")).chunks().items()))
    response = httpx.get(f"{server.url}/chunks/{sha}")  # httpx accepts gzip, and decodes it
    assert response.headers["content-encoding"] == "gzip" and response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) < size / 10  # the api-demo bundle is mostly b"y"
    assert hashlib.sha256(response.content).hexdigest() == sha
    assert response.headers["etag"] == f'W/"{sha}"'  # the same bytes once decoded
    assert (server.data / "chunks.gz" / f"{sha}.gz").is_file()  # compressed once, kept with the registry
    manifest = channel(server, "d0")
    assert manifest.headers["content-encoding"] == "gzip" and Manifest.from_json(manifest.content).name == "api-demo"
    ranged = httpx.get(f"{server.url}/chunks/{sha}", headers={"range": "bytes=0-9"})
    assert ranged.status_code == 206 and "content-encoding" not in ranged.headers


def test_incompressible_chunks_travel_as_they_are(server, tmp_path):
    folder = make_bundle(tmp_path, KEY, "api-random", "1.0.0", body=random.Random(1).randbytes(100_000))
    Registry(server.data).publish(folder, "stable")
    for sha in Manifest.from_json((folder / "manifest.json").read_bytes()).chunks():
        response = httpx.get(f"{server.url}/chunks/{sha}")
        assert "content-encoding" not in response.headers and hashlib.sha256(response.content).hexdigest() == sha
        assert response.headers["etag"] == f'"{sha}"'


def test_a_chunk_can_be_fetched_in_ranges(server, published):
    sha, _size = next(iter(Manifest.from_json(published.manifest("api-demo", "1.0.0")).chunks().items()))
    response = httpx.get(f"{server.url}/chunks/{sha}", headers={"range": "bytes=10-19"})
    assert response.status_code == 206 and len(response.content) == 10  # resumable downloads


def test_chunks_of_the_built_site_are_served_without_publishing(server):
    manifest = json.loads((server.site / "bundles" / "digits" / "1.0.0" / "manifest.json").read_text())
    sha = manifest["files"][0]["chunks"][0][0]
    response = httpx.get(f"{server.url}/chunks/{sha}")
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == sha
    assert "immutable" in response.headers["cache-control"]


@pytest.mark.parametrize(("address", "status"), [
    ("0" * 64, 404),
    ("A" * 64, 400),
    ("abc", 400),
    ("..%2F..%2Fregistry.sqlite3", 400),
])
def test_unknown_and_malformed_chunk_addresses(server, address, status):
    response = httpx.get(f"{server.url}/chunks/{address}")
    assert response.status_code == status
    assert "chunk" in response.json()["error"]
    assert "immutable" not in response.headers.get("cache-control", "")
