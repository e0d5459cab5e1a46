"""WAYSTATION_CHUNK_BASE_URL on a real `waystation serve`: the channel answers name the static host
(Waystation-Chunk-Base) and the CSP lets pages and the service worker connect there; without it,
neither changes; a value devices could not use stops the server at start."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.device import Manifest
from waystation.server.registry import Registry
from waystation.server.security_headers import CONTENT_SECURITY_POLICY

from bundle_factory import make_bundle
from server_process import Server

KEY = Ed25519PrivateKey.generate()
CDN = "https://cdn.example.com:8443/app"


def start(site: Path, data: Path, tmp: Path, **env: str) -> Server:
    server = Server(site, data, **env).start()
    Registry(server.data).publish(make_bundle(tmp, KEY, "demo", "1.0.0"), "stable")
    return server


@pytest.fixture(scope="module")
def with_cdn(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(site, tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("b"), WAYSTATION_CHUNK_BASE_URL=CDN)
    yield server
    server.stop()


def policy(response: httpx.Response) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))


def test_the_manifest_and_the_check_in_name_the_static_folder(with_cdn: Server) -> None:
    manifest = httpx.get(f"{with_cdn.url}/api/bundles/demo/channels/stable", params={"device": "d1"})
    assert manifest.status_code == 200 and manifest.headers["Waystation-Chunk-Base"] == CDN + "/"
    assert manifest.content == Registry(with_cdn.data).manifest("demo", "1.0.0")  # the signed bytes as published
    again = httpx.get(f"{with_cdn.url}/api/bundles/demo/channels/stable", params={"device": "d1"},
                      headers={"If-None-Match": manifest.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Waystation-Chunk-Base"] == CDN + "/"
    status = httpx.get(f"{with_cdn.url}/api/bundles/demo/channels/stable/status", params={"device": "d1"})
    assert status.status_code == 200 and status.headers["Waystation-Chunk-Base"] == CDN + "/"
    assert "chunkBase" not in status.json()  # the check-in's body is unchanged


def test_the_csp_allows_the_static_hosts_origin_and_nothing_else_changes(with_cdn: Server) -> None:
    for path in ("/", "/sw.js", "/api/health", "/no-such-file"):
        got = policy(httpx.get(with_cdn.url + path))
        default = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
        assert got == {**default, "connect-src": "'self' https://cdn.example.com:8443"}, path


def test_the_instance_still_serves_every_chunk_as_the_fallback(with_cdn: Server) -> None:
    manifest = Manifest.from_json(Registry(with_cdn.data).manifest("demo", "1.0.0") or b"")
    for sha, size in manifest.chunks().items():
        response = httpx.get(f"{with_cdn.url}/chunks/{sha}")
        assert response.status_code == 200 and len(response.content) == size


def test_without_the_setting_there_is_no_header_and_the_csp_is_same_origin(site: Path, tmp_path: Path) -> None:
    server = start(site, tmp_path / "data", tmp_path / "b", WAYSTATION_CHUNK_BASE_URL="")
    try:
        for path in ("channels/stable", "channels/stable/status"):
            answer = httpx.get(f"{server.url}/api/bundles/demo/{path}", params={"device": "d1"})
            assert answer.status_code == 200 and "Waystation-Chunk-Base" not in answer.headers
            assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    finally:
        server.stop()


def test_a_malformed_setting_stops_the_server_at_start(site: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"WAYSTATION_CHUNK_BASE_URL='cdn.example.com/app': give an absolute http\(s\) URL"):
        Server(site, tmp_path / "data", WAYSTATION_CHUNK_BASE_URL="cdn.example.com/app").start()
