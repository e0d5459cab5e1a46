"""The MiniLM notes workflow on the native host: embeddings, search, tags, and bad input."""

import asyncio
import math
from pathlib import Path

import pytest

from waystation.bundles.builder import build_bundle
from waystation.device import App, ArgumentError

ROOT = Path(__file__).resolve().parents[2]
NOTES = [
    "Buy oat milk, coffee beans and bread",
    "Quarterly planning meeting with the design team on Thursday",
    "Book the flight to Lisbon and a hotel near the old town",
    "Run 5 km three times a week and sleep before midnight",
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    bundle = build_bundle(ROOT / "models" / "minilm", tmp_path_factory.mktemp("bundles"), progress=lambda _m: None)
    app = asyncio.run(App.open(bundle))
    yield app
    app.close()


def call(app, name, args=None):
    return asyncio.run(app.call(name, args))["result"]


@pytest.fixture
def notes(app):
    """NOTES added to this test's empty state (tests/unit/conftest.py resets it for each test)."""
    return call(app, "add_notes", {"texts": NOTES})


def test_embeddings_are_unit_vectors_and_report_truncation(app):
    long_text = "offline " * 400
    out = call(app, "embed", {"texts": ["hello world", long_text]})
    vectors = out["embeddings"]
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert all(math.isclose(math.sqrt(sum(v * v for v in row)), 1.0, rel_tol=1e-4) for row in vectors)
    assert out["truncated"] == [False, True]
    assert out["tokens"] == [4, 256]


def test_search_finds_notes_by_meaning_and_tags_them(app):
    added = call(app, "add_notes", {"texts": NOTES})
    assert [n["text"] for n in added] == NOTES
    by_text = {n["text"]: n["tags"] for n in added}
    assert "shopping" in by_text[NOTES[0]]
    assert "travel" in by_text[NOTES[2]]
    assert call(app, "search", {"query": "groceries", "k": 2})[0]["text"] == NOTES[0]
    hits = call(app, "search", {"query": "vacation abroad", "k": 10})
    assert hits[0]["text"] == NOTES[2]
    assert len(hits) == len(call(app, "notes"))  # k is bounded by the number of notes
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_relabelling_retags_every_note(app, notes):
    relabelled = call(app, "set_labels", {"labels": {"food": "food and drink", "sport": "sport and running"}})
    assert len(relabelled) == len(notes)
    tags = {n["text"]: n["tags"] for n in relabelled}
    assert tags[NOTES[0]] == ["food"]
    assert tags[NOTES[3]] == ["sport"]


def test_remove_note(app, notes):
    first = call(app, "notes")[0]
    assert first["text"] == NOTES[0]
    assert call(app, "remove_note", {"id": first["id"]}) is True
    assert first["id"] not in [n["id"] for n in call(app, "notes")]
    with pytest.raises(KeyError, match=f"no note with id '{first['id']}'"):
        call(app, "remove_note", {"id": first["id"]})


@pytest.mark.parametrize(
    ("name", "args", "error", "message"),
    [
        ("embed", {"texts": []}, ValueError, "texts is empty"),
        ("embed", {"texts": ["ok", "  "]}, ValueError, r"texts\[1\] is empty or blank"),
        ("embed", {"texts": ["x"] * 129}, ValueError, "at most 128 texts per call, got 129"),
        ("embed", {"texts": ["ok", 3]}, ArgumentError, r"^embed\(\): texts\[1\]: expected str, got int$"),
        ("search", {"query": "x", "k": 0}, ValueError, "k must be at least 1"),
        ("search", {"query": " "}, ValueError, "query is empty"),
    ],
)
def test_bad_input_gets_a_clear_error(app, name, args, error, message):
    with pytest.raises(error, match=message):
        call(app, name, args)


def test_notes_synced_in_from_another_replica_are_embedded_for_search_and_dropped_when_removed(app, notes):
    from waystation.device.hosts.state_native import NativeStateBackend
    from waystation.device.state import open_state

    here = open_state("notes")  # what the workflow's ctx.state("notes") is on this host
    elsewhere = open_state("notes", NativeStateBackend())  # another device's replica
    elsewhere.apply_update(here.encode_state())
    elsewhere.map("notes")["from-the-phone"] = {"text": "Renew the passport before the trip", "tags": ["travel"], "added": 1.0}
    here.apply_update(elsewhere.encode_state(here.state_vector()))

    hit = call(app, "search", {"query": "travel documents", "k": 1})[0]
    assert hit["id"] == "from-the-phone" and hit["tags"] == ["travel"]
    assert call(app, "notes")[0]["id"] == "from-the-phone"  # oldest first, by when it was added

    del elsewhere.map("notes")["from-the-phone"]
    here.apply_update(elsewhere.encode_state(here.state_vector()))
    assert "from-the-phone" not in [h["id"] for h in call(app, "search", {"query": "travel documents", "k": 10})]
