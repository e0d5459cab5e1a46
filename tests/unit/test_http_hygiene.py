"""HTTP hygiene of `waystation serve`: security headers on every response, no dotfiles, cache
headers decided on the file served, against the real server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from waystation.site import _copy_tree

from http_server import Server, raw_request

IMMUTABLE = "public, max-age=31536000, immutable"
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("hygiene-site")
    (site / "boot.json").write_text("{}")
    (site / "index.html").write_text("<!doctype html><title>home</title>")
    (site / ".env").write_text("SECRET=dotfile")
    (site / ".git").mkdir()
    (site / ".git" / "config").write_text("SECRET=dotfile")
    (site / "js").mkdir()
    (site / "js" / ".hidden.js").write_text("SECRET=dotfile")
    (site / "js" / "app.js").write_text("export {};")
    version = site / "bundles" / "demo" / "1.0.0"
    version.mkdir(parents=True)
    (version / "model.json").write_text("{}")
    (version / "home.html").symlink_to("../../../index.html")  # a file under bundles/ that is not one
    return site


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(site, tmp_path_factory.mktemp("hygiene-data")).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/index.html", 200),  # static
    ("GET", "/api/health", 200),  # API
    ("GET", "/no-such-file.js", 404),
    ("GET", "/chunks/not-a-chunk", 400),
    ("POST", "/index.html", 405),
    ("POST", "/api/sync/login", 413),
    ("GET", "/.env", 404),
])
def test_every_response_carries_the_security_headers(server: Server, method: str, path: str, status: int) -> None:
    response = httpx.request(method, server.url + path, content=b"x" * (1 << 17) if status == 413 else None)
    assert response.status_code == status
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, name
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self' 'wasm-unsafe-eval'"  # WebAssembly, but no eval nor inline script
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]


def test_a_refused_body_is_a_json_error(server: Server) -> None:
    response = httpx.post(server.url + "/api/sync/register", content=b"{" + b" " * (1 << 17) + b"}")
    assert response.status_code == 413
    assert "larger than 65536 bytes" in response.json()["error"]


@pytest.mark.parametrize("path", ["/.env", "/.git/config", "/js/.hidden.js", "/%2eenv", "/js/%2Ehidden.js"])
def test_dotfiles_are_never_served(server: Server, path: str) -> None:
    status, _, body = raw_request(server.port, f"GET {path} HTTP/1.1")
    assert status == 404 and b"SECRET" not in body


def test_files_beside_dotfiles_are_served(server: Server) -> None:
    response = httpx.get(server.url + "/js/app.js")
    assert response.status_code == 200 and response.text == "export {};"


def test_a_real_bundle_file_is_immutable(server: Server) -> None:
    status, headers, _ = raw_request(server.port, "GET /bundles/demo/1.0.0/model.json HTTP/1.1")
    assert status == 200 and headers["cache-control"] == IMMUTABLE


@pytest.mark.parametrize("path", [
    "/bundles/x/9.9.9/../../../index.html",
    "/bundles/x/9.9.9/%2e%2e/%2e%2e/%2e%2e/index.html",
    "/bundles/demo/1.0.0/./../../../index.html",
    "/bundles/demo/1.0.0/home.html",  # a symlink to index.html
])
def test_a_path_only_spelled_like_a_bundle_file_is_not_immutable(server: Server, path: str) -> None:
    status, headers, _ = raw_request(server.port, f"GET {path} HTTP/1.1")
    assert status in (200, 404)
    assert headers.get("cache-control") != IMMUTABLE


def test_the_site_build_leaves_dotfiles_out(tmp_path: Path) -> None:
    source, out = tmp_path / "web", tmp_path / "dist"
    (source / "sub" / ".cache").mkdir(parents=True)
    for name in (".env", "sub/.swp", "sub/.cache/x.js", "index.html", "sub/page.js"):
        (source / name).write_text(json.dumps(name))
    _copy_tree(source, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["index.html", "sub/page.js"]
