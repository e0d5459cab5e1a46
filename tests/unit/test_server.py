"""`waystation serve` on 127.0.0.1: media types, cache lifetimes, cross-origin isolation."""

import httpx
import pytest

from waystation.server.storage import Storage

from test_sync_server import register


@pytest.mark.parametrize(
    ("path", "media_type", "cache"),
    [
        ("/", "text/html", "no-cache"),
        ("/worker.js", "text/javascript", "no-cache"),
        ("/ort/ort.wasm.min.mjs", "text/javascript", "no-cache"),
        ("/pyodide/pyodide.asm.wasm", "application/wasm", "no-cache"),
        ("/bundles/digits/latest.json", "application/json", "no-cache"),
        ("/bundles/digits/1.0.0/classifier.onnx", "application/octet-stream", "immutable"),
    ],
)
def test_static_files_have_type_cache_and_isolation_headers(server, path, media_type, cache):
    response = httpx.get(server.url + path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert cache in response.headers["cache-control"]
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"


def test_etag_revalidation_answers_304(server):
    first = httpx.get(server.url + "/waystation.js")
    again = httpx.get(server.url + "/waystation.js", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304


def test_unknown_path_is_404_with_isolation_headers(server):
    response = httpx.get(server.url + "/nope.js")
    assert response.status_code == 404
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"


def test_server_state_lives_under_data(server, storage_engine):
    """What the server keeps is in its storage (SQLite files under --data, or the data folder's
    PostgreSQL database): the site's bundles it published at start, an account made over HTTP."""
    user, _token = register(server)
    storage = Storage.at(server.data)
    assert storage.engine == storage_engine
    if storage_engine == "sqlite":
        assert (server.data / "sync.sqlite3").is_file() and (server.data / "registry.sqlite3").is_file()
    with storage.database("sync").transaction() as db:
        assert db.execute("SELECT count(*) FROM sync_users WHERE name = ?", (user,)).fetchone() == (1,)
    with storage.database("registry").transaction() as db:
        assert ("digits", "1.0.0") in [tuple(row) for row in db.execute("SELECT bundle, version FROM versions")]
