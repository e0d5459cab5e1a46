"""`waystation bundle publish --static-dir DIR`: a release's chunks as plain files for a static host,
exactly the bundle's, checked, written once; and the WAYSTATION_CHUNK_BASE_URL setting's checks."""

import hashlib
import os
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tiny_bundle import error_line, waystation

from waystation.device import Manifest
from waystation.device.errors import BundleError
from waystation.server.registry import Registry
from waystation.server.static_export import chunk_base_url, chunk_origin, export_chunks

from bundle_factory import make_bundle

KEY = Ed25519PrivateKey.generate()


def chunks_of(folder: Path) -> dict[str, int]:
    return Manifest.from_json((folder / "manifest.json").read_bytes()).chunks()


def listing(static: Path) -> dict[str, str]:
    """{file name: sha256 of its bytes} of static/chunks."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (static / "chunks").iterdir()}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """demo 1.0.0: a workflow script of some 600 KiB, several chunks."""
    return make_bundle(tmp_path / "built", KEY, "demo", "1.0.0", body=random.Random(7).randbytes(600 * 1024))


def test_publish_writes_exactly_the_bundles_chunks_each_named_by_its_hash(bundle, tmp_path):
    static = tmp_path / "static"
    out = waystation("bundle", "publish", bundle, "--channel", "beta", "--data", tmp_path / "data", "--static-dir", static)
    assert out.returncode == 0, out.stderr
    chunks = chunks_of(bundle)
    assert len(chunks) > 3
    assert listing(static) == {sha: sha for sha in chunks}  # no other file, no partial left behind
    assert {p.name: p.stat().st_size for p in (static / "chunks").iterdir()} == chunks
    assert all((static / "chunks" / sha).stat().st_mode & 0o444 == 0o444 for sha in chunks)  # a web server can read them
    assert f"{len(chunks)} chunks" in out.stdout and "0 already there" in out.stdout
    assert "published demo 1.0.0" in out.stdout
    assert [r.version for r in Registry(tmp_path / "data").releases("demo", "beta")] == ["1.0.0"]


def test_a_second_export_writes_nothing_and_leaves_the_files_untouched(bundle, tmp_path):
    static = tmp_path / "static"
    first = export_chunks(bundle, static)
    assert sorted(first.written) == sorted(chunks_of(bundle)) and first.kept == []
    stamps = {p.name: p.stat().st_mtime_ns for p in (static / "chunks").iterdir()}
    again = export_chunks(bundle, static)
    assert (again.written, again.replaced, again.bytes_written) == ([], [], 0)
    assert sorted(again.kept) == sorted(chunks_of(bundle))
    assert {p.name: p.stat().st_mtime_ns for p in (static / "chunks").iterdir()} == stamps  # a sync sends nothing


def test_the_publish_command_is_idempotent_too(bundle, tmp_path):
    static, data = tmp_path / "static", tmp_path / "data"
    for _ in range(2):
        out = waystation("bundle", "publish", bundle, "--data", data, "--static-dir", static)
        assert out.returncode == 0, out.stderr
    assert f"0 chunks (0.0 KiB) written to {static / 'chunks'}, {len(chunks_of(bundle))} already there" in out.stdout
    assert listing(static) == {sha: sha for sha in chunks_of(bundle)}


def test_versions_share_chunks_in_one_folder(bundle, tmp_path):
    static = tmp_path / "static"
    export_chunks(bundle, static)
    body = random.Random(7).randbytes(600 * 1024)
    newer = make_bundle(tmp_path / "built", KEY, "demo", "1.0.1", body=body[:300_000] + b"an edit" + body[300_000:])
    second = export_chunks(newer, static)
    assert second.kept and second.written  # the unchanged chunks are there already; only the edited ones are new
    assert set(second.written) == set(chunks_of(newer)) - set(chunks_of(bundle))
    assert set(listing(static)) == set(chunks_of(bundle)) | set(chunks_of(newer))


def test_a_corrupt_chunk_already_in_the_folder_is_replaced_and_said_so(bundle, tmp_path):
    static = tmp_path / "static"
    export_chunks(bundle, static)
    victim = sorted(chunks_of(bundle))[1]
    good = (static / "chunks" / victim).read_bytes()
    (static / "chunks" / victim).write_bytes(good[: len(good) // 2])  # a torn copy
    out = waystation("bundle", "publish", bundle, "--data", tmp_path / "data", "--static-dir", static)
    assert out.returncode == 0, out.stderr
    assert (static / "chunks" / victim).read_bytes() == good
    assert f"{static / 'chunks' / victim} held other bytes" in out.stderr and "purge it from any CDN cache" in out.stderr
    assert f"1 held other bytes and were replaced: purge them from any CDN cache ({victim[:16]})" in out.stdout
    assert listing(static) == {sha: sha for sha in chunks_of(bundle)}


def test_a_folder_where_a_chunk_belongs_is_refused_with_its_path(bundle, tmp_path):
    static = tmp_path / "static"
    victim = sorted(chunks_of(bundle))[0]
    (static / "chunks" / victim).mkdir(parents=True)
    with pytest.raises(BundleError, match=rf"^{static / 'chunks' / victim} is a folder, not a chunk: remove it$"):
        export_chunks(bundle, static)


def test_a_bundle_whose_files_do_not_match_its_manifest_writes_nothing(bundle, tmp_path):
    script = bundle / "workflow.py"
    data = bytearray(script.read_bytes())
    data[-1] ^= 1
    script.write_bytes(bytes(data))
    static = tmp_path / "static"
    out = waystation("bundle", "publish", bundle, "--data", tmp_path / "data", "--static-dir", static)
    assert out.returncode != 0
    assert "file 'workflow.py' does not match its size or sha256 in the manifest" in error_line(out)
    assert not (static / "chunks").exists() or not list((static / "chunks").iterdir())


def test_an_unsigned_bundle_is_refused_before_anything_is_exported(tmp_path):
    unsigned = make_bundle(tmp_path / "built", None, "demo", "1.0.0")
    static = tmp_path / "static"
    out = waystation("bundle", "publish", unsigned, "--data", tmp_path / "data", "--static-dir", static)
    assert out.returncode != 0 and "the manifest is not signed" in error_line(out)
    assert not static.exists()


def test_an_unwritable_static_folder_is_a_clear_error(bundle, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    static = tmp_path / "static"
    (static / "chunks").mkdir(parents=True)
    (static / "chunks").chmod(0o555)
    try:
        with pytest.raises(BundleError, match=r"cannot be written: Permission denied$"):
            export_chunks(bundle, static)
    finally:
        (static / "chunks").chmod(0o755)


@pytest.mark.parametrize(("value", "base"), [
    ("", None),
    ("https://cdn.example.com/app/", "https://cdn.example.com/app/"),
    ("https://cdn.example.com/app", "https://cdn.example.com/app/"),
    ("http://127.0.0.1:8123", "http://127.0.0.1:8123/"),
])
def test_the_chunk_base_url_ends_in_a_slash(value, base):
    assert chunk_base_url({"WAYSTATION_CHUNK_BASE_URL": value}) == base
    assert chunk_base_url({}) is None


@pytest.mark.parametrize("value", ["cdn.example.com/app/", "/static/", "ftp://cdn.example.com/", "https://cdn.example.com/?v=1",
                                   "https://user:pw@cdn.example.com/", "https://cdn.example.com:port/"])
def test_a_chunk_base_url_that_devices_could_not_use_is_refused(value):
    with pytest.raises(ValueError, match=r"^WAYSTATION_CHUNK_BASE_URL="):
        chunk_base_url({"WAYSTATION_CHUNK_BASE_URL": value})


def test_the_origin_of_a_chunk_base_url():
    assert chunk_origin("https://CDN.example.com:8443/app/") == "https://cdn.example.com:8443"
    assert chunk_origin("http://127.0.0.1:9000/") == "http://127.0.0.1:9000"
