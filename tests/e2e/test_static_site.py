"""The site and its chunks from a static server, the API from the instance, under one origin: Debian's
nginx serves the built site and the folder `waystation bundle publish --static-dir` wrote, with the
headers docs/static-hosting.md lists, and proxies /api/ to `waystation serve`; a real browser loads
the page from nginx, installs, updates and runs the bundle.

nginx's access log says, per request, whether the instance answered it ($upstream_addr): every
chunk must come from the folder, and the channel API from the instance.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext

from .conftest import wait_ready
from .test_bundle_updates import ANSWER, UPDATE, Version, load, make_v2
from .test_static_chunks import publish
from server_process import Server, free_port

NGINX = Path("/usr/sbin/nginx")
# The one-origin configuration of docs/static-hosting.md, with this test's paths and ports, and a
# log of which requests the instance answered.
CONFIG = """
daemon off;
user root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {tmp}/access.log upstream;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream waystation {{ server 127.0.0.1:{instance}; }}
    server {{
        listen 127.0.0.1:{port};
        root {site};
        types {{ text/html html; text/javascript js mjs; application/json json; application/wasm wasm;
                text/css css; application/zip whl; }}
        default_type application/octet-stream;

        add_header Cross-Origin-Opener-Policy same-origin always;
        add_header Cross-Origin-Embedder-Policy require-corp always;
        add_header Cross-Origin-Resource-Policy same-origin always;
        add_header Content-Security-Policy "{csp}" always;
        add_header X-Content-Type-Options nosniff always;
        add_header Referrer-Policy no-referrer always;
        add_header X-Frame-Options DENY always;
        add_header Cache-Control no-cache always;

        location ~ /\\. {{ return 404; }}
        location /chunks/ {{
            root {static};
            add_header Cross-Origin-Opener-Policy same-origin always;
            add_header Cross-Origin-Embedder-Policy require-corp always;
            add_header Cross-Origin-Resource-Policy same-origin always;
            add_header X-Content-Type-Options nosniff always;
            add_header Cache-Control "public, max-age=31536000, immutable" always;
            try_files $uri @waystation;
        }}
        location ^~ /api/ {{
            proxy_pass http://waystation;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
        }}
        location = /dashboard {{ proxy_pass http://waystation; }}
        location @waystation {{ proxy_pass http://waystation; }}
    }}
}}
"""


@dataclass(frozen=True)
class Site:
    url: str
    log: Path
    v1: Version
    v2: Version

    def served(self) -> list[tuple[str, str, str]]:
        """(uri, status, who answered: "static" or "instance") of every request nginx logged."""
        rows = [line.split(" ") for line in self.log.read_text().splitlines()]
        return [(uri, status, "static" if upstream == "-" else "instance") for _method, uri, status, upstream in rows]


@pytest.fixture(scope="module")
def site(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not NGINX.exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    from waystation.server.security_headers import CONTENT_SECURITY_POLICY

    tmp = tmp_path_factory.mktemp("static-site")
    static = tmp / "static"
    server = Server(site_dir, tmp / "data").start()
    nginx = None
    try:
        v1_folder, v2_folder = site_dir / "bundles" / "digits" / "1.0.0", make_v2(tmp)
        publish(v1_folder, "stable", server.data, static)
        publish(v2_folder, "beta", server.data, static)
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(CONFIG.format(tmp=tmp, instance=server.port, port=port, site=site_dir, static=static,
                                      csp=CONTENT_SECURITY_POLICY))
        check = subprocess.run([NGINX, "-t", "-p", tmp, "-c", conf], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        nginx = subprocess.Popen([NGINX, "-p", tmp, "-c", conf], stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and nginx.poll() is None, "nginx did not come up"
            time.sleep(0.05)
        yield Site(url, tmp / "access.log", load(v1_folder), load(v2_folder))
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=15)
        server.stop()


def test_the_page_runs_from_the_static_server_with_only_the_api_from_the_instance(context: BrowserContext, site: Site):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site.url + "/digits.html")
    wait_ready(page)
    assert not errors, errors
    assert page.evaluate("crossOriginIsolated")  # the static server's headers isolate the page as the instance's do
    answer = page.evaluate(ANSWER)
    assert (answer["version"], answer["digit"]) == ("1.0.0", answer["label"])
    out = page.evaluate(UPDATE, {"channel": "beta"})
    assert out["ok"], out
    answer = page.evaluate(ANSWER)
    assert (answer["version"], answer["digit"]) == ("1.0.1", answer["label"])

    served = site.served()
    chunks = [(uri.rsplit("/", 1)[1], status, who) for uri, status, who in served if uri.startswith("/chunks/")]
    wanted = set(site.v1.chunks) | set(site.v2.chunks)
    assert {sha for sha, _, _ in chunks} == wanted
    assert {(status, who) for _, status, who in chunks} == {("200", "static")}
    api = [(uri, who) for uri, _, who in served if uri.startswith("/api/")]
    assert ("/api/bundles/digits/channels/stable", "instance") in api
    assert ("/api/bundles/digits/channels/beta", "instance") in api
    pages = [(uri, status, who) for uri, status, who in served if uri in ("/digits.html", "/sw.js", "/boot.json")]
    assert {uri for uri, _, _ in pages} == {"/digits.html", "/sw.js", "/boot.json"}
    assert {who for _, _, who in pages} == {"static"}


def test_a_chunk_not_synced_yet_comes_from_the_instance_through_the_same_url(site: Site):
    missing = sorted(site.v2.chunks)[0]
    response = httpx.get(f"{site.url}/chunks/{'0' * 64}")
    assert response.status_code == 404  # neither has it
    (site.log.parent / "static" / "chunks" / missing).rename(site.log.parent / "aside")
    try:
        response = httpx.get(f"{site.url}/chunks/{missing}")
        assert response.status_code == 200 and len(response.content) == site.v2.chunks[missing]
        assert site.served()[-1] == (f"/chunks/{missing}", "200", "instance")
    finally:
        (site.log.parent / "aside").rename(site.log.parent / "static" / "chunks" / missing)
