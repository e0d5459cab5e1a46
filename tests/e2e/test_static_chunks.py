"""Chunks from a static host: the instance answers the channel API, a plain static server on another
origin (a CORS-enabled folder, as a CDN is) serves the chunks `waystation bundle publish --static-dir`
wrote, and a real browser installs, updates and runs the bundle from them.

The server runs with WAYSTATION_CHUNK_BASE_URL pointing at the static host: its manifest answers
name that host (Waystation-Chunk-Base) and its CSP lets the service worker connect there. The
static host is a Python http.server in this process, so the test sees every path it served and can
make it serve wrong bytes: the device must catch those by hash and fetch them from the instance.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from .conftest import wait_ready
from .test_bundle_updates import ANSWER, UPDATE, Version, load, make_v2
from server_process import ROOT, Server, free_port


@dataclass
class StaticHost:
    """A folder served over HTTP with CORS, as a CDN serves a synced folder; `tampered` chunks come back altered."""

    folder: Path
    served: list[str] = field(default_factory=list)
    tampered: set[str] = field(default_factory=set)
    url: str = ""

    def handler(self, *args: Any) -> SimpleHTTPRequestHandler:
        host = self

        class Handler(SimpleHTTPRequestHandler):
            def end_headers(self) -> None:
                self.send_header("Access-Control-Allow-Origin", "*")  # what a CDN is configured to send
                super().end_headers()

            def do_GET(self) -> None:
                host.served.append(self.path)
                sha = self.path.rsplit("/", 1)[-1]
                if self.path.startswith("/chunks/") and sha in host.tampered:
                    body = bytearray((host.folder / "chunks" / sha).read_bytes())
                    body[0] ^= 0xFF
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler(*args, directory=str(self.folder))


@dataclass(frozen=True)
class Setup:
    server: Server
    static: StaticHost
    v1: Version
    v2: Version


def publish(bundle: Path, channel: str, data: Path, static: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "waystation", "bundle", "publish", str(bundle), "--channel", channel,
                          "--data", str(data), "--static-dir", str(static)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def setup(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("static-chunks")
    static = StaticHost(tmp / "static")
    static.folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(StaticHost.handler, static))
    static.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server = Server(site_dir, tmp / "data", WAYSTATION_CHUNK_BASE_URL=static.url + "/").start()
    try:
        v1_folder = site_dir / "bundles" / "digits" / "1.0.0"
        v2_folder = make_v2(tmp)
        # digits 1.0.0 is the site's, published on stable by `waystation serve`: publishing it again
        # changes nothing there and writes its chunks to the static folder.
        publish(v1_folder, "stable", server.data, static.folder)
        publish(v2_folder, "beta", server.data, static.folder)
        yield Setup(server, static, load(v1_folder), load(v2_folder))
    finally:
        server.stop()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def chunk_urls(context: BrowserContext) -> list[str]:
    """Every chunk URL the browser requests (the service worker's included), whole, in order."""
    seen: list[str] = []
    context.on("request", lambda r: seen.append(r.url) if "/chunks/" in r.url else None)
    return seen


def boot(context: BrowserContext, setup: Setup) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{setup.server.url}/digits.html")
    wait_ready(page)
    assert not errors, errors
    return page


def answers_with(page: Page, version: str) -> None:
    answer = page.evaluate(ANSWER)
    assert (answer["version"], answer["digit"]) == (version, answer["label"])


def test_the_channel_api_names_the_static_host_and_the_csp_allows_it(setup):
    url = setup.server.url
    manifest = httpx.get(f"{url}/api/bundles/digits/channels/stable?device=d1")
    assert manifest.status_code == 200
    assert manifest.headers["Waystation-Chunk-Base"] == setup.static.url + "/"
    assert manifest.content == (setup.v1.folder / "manifest.json").read_bytes()  # the signed bytes, unchanged
    status = httpx.get(f"{url}/api/bundles/digits/channels/stable/status?device=d1")
    assert status.headers["Waystation-Chunk-Base"] == setup.static.url + "/"
    policy = dict(p.strip().split(" ", 1) for p in httpx.get(f"{url}/sw.js").headers["Content-Security-Policy"].split(";"))
    assert policy["connect-src"] == f"'self' {setup.static.url}"
    assert policy["default-src"] == "'self'"


def test_install_and_update_fetch_every_chunk_from_the_static_host_and_none_from_the_instance(context, setup, chunk_urls):
    setup.static.served.clear()
    page = boot(context, setup)
    assert sorted(chunk_urls) == sorted(f"{setup.static.url}/chunks/{sha}" for sha in setup.v1.chunks)
    answers_with(page, "1.0.0")

    chunk_urls.clear()
    out = page.evaluate(UPDATE, {"channel": "beta"})
    assert out["ok"], out
    new = [sha for sha in setup.v2.chunks if sha not in setup.v1.chunks]
    assert sorted(chunk_urls) == sorted(f"{setup.static.url}/chunks/{sha}" for sha in new)
    assert out["result"]["fetchedBytes"] == sum(setup.v2.chunks[sha] for sha in new)
    answers_with(page, "1.0.1")
    assert page.evaluate("app.call('release_notes')") == "1.0.1: calibration data"
    # The static host saw them all (the browser reported no request it did not make).
    assert sorted(setup.static.served) == sorted(f"/chunks/{sha}" for sha in [*setup.v1.chunks, *new])

    context.set_offline(True)  # and they are the device's own now
    page.reload()
    wait_ready(page)
    answers_with(page, "1.0.1")


def test_wrong_bytes_from_the_static_host_are_caught_and_fetched_from_the_instance(context, setup, chunk_urls):
    new = sorted(sha for sha in setup.v2.chunks if sha not in setup.v1.chunks)
    bad = new[0]
    setup.static.tampered.add(bad)
    try:
        page = boot(context, setup)
        chunk_urls.clear()
        out = page.evaluate(UPDATE, {"channel": "beta"})
    finally:
        setup.static.tampered.clear()
    assert out["ok"], out
    answers_with(page, "1.0.1")
    assert chunk_urls.count(f"{setup.static.url}/chunks/{bad}") == 3  # the first try and 2 retries, each refused by hash
    assert f"{setup.server.url}/chunks/{bad}" in chunk_urls  # then the instance's copy
    # Each new chunk came from one place or the other, and only the instance served the rest after the fault.
    fetched = {url.rsplit("/", 1)[1] for url in chunk_urls}
    assert fetched == set(new)
    assert all(url.startswith((setup.static.url + "/", setup.server.url + "/")) for url in chunk_urls)
    versions = page.evaluate("app.versions()")
    assert set(versions["storedChunks"]) == set(setup.v1.chunks) | set(setup.v2.chunks)
