"""Content-defined chunks: stable under edits elsewhere in a file, stored by their hash."""

import hashlib
import random

import pytest

from waystation.bundles.chunks import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, ChunkStore, split, split_at
from waystation.device import BundleError


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(0).randbytes(40 * CHUNK_AVG)


def test_same_bytes_give_the_same_chunks(data):
    chunks = split(data)
    assert chunks == split(bytes(data))
    assert sum(size for _, size in chunks) == len(data)
    assert len(chunks) >= 20  # about 40 expected: the bounds below are checked on many chunks, not on none
    assert all(CHUNK_MIN <= size <= CHUNK_MAX for _, size in chunks[:-1])
    offset = 0
    for sha, size in chunks:
        assert hashlib.sha256(data[offset:offset + size]).hexdigest() == sha
        offset += size


def test_sizes_average_near_the_target(data):
    chunks = split(data)
    assert 0.5 * CHUNK_AVG < len(data) / len(chunks) < 2 * CHUNK_AVG


def spans(chunks):
    """(start, end, sha) of each chunk."""
    out, offset = [], 0
    for sha, size in chunks:
        out.append((offset, offset + size, sha))
        offset += size
    return out


@pytest.mark.parametrize(("cut", "insert"), [(4, b"\xff" * 4), (0, b"inserted"), (1000, b"")],
                         ids=["overwritten", "inserted", "deleted"])
def test_a_change_in_the_middle_keeps_the_chunks_before_and_after(data, cut, insert):
    middle = len(data) // 2
    before, after = split(data), split(data[:middle] + insert + data[middle + cut:])
    ahead = [sha for start, end, sha in spans(before) if end <= middle]
    assert [sha for sha, _ in after[:len(ahead)]] == ahead  # untouched: cut at the same places
    # Past the change the cuts fall back into step within a chunk or two: the rest is kept.
    behind = [sha for start, end, sha in spans(before) if start >= middle + cut + 2 * CHUNK_MAX]
    assert len(behind) > 10 and set(behind) <= {sha for sha, _ in after}
    fetched = sum(size for sha, size in after if sha not in {s for s, _ in before})
    assert fetched <= 3 * CHUNK_MAX


def test_empty_file_has_no_chunks():
    assert split(b"") == []


def test_store_is_content_addressed_and_immutable(tmp_path, data):
    store = ChunkStore(tmp_path / "chunks")
    chunks = split(data)
    assert store.put_file(data, chunks) == len(data)
    assert store.put_file(data, chunks) == 0  # already there: nothing new written
    for sha, size in chunks:
        assert sha in store and store.path(sha).stat().st_size == size
    assert not list((tmp_path / "chunks").glob(".partial-*"))


def test_store_refuses_bad_addresses_and_mismatched_chunks(tmp_path, data):
    store = ChunkStore(tmp_path)
    with pytest.raises(ValueError, match="not a lowercase SHA-256"):
        store.path("../etc/passwd")
    (sha, size), *rest = split(data)
    with pytest.raises(BundleError, match="does not match the file's bytes"):
        split_at(data, [("0" * 64, size), *rest])
    with pytest.raises(BundleError, match=f"the chunks cover {size} bytes, the file has {len(data)}"):
        split_at(data, [(sha, size)])
