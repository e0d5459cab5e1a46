"""Notes: offline semantic search and zero-shot tagging with all-MiniLM-L6-v2.

Text is tokenized here in pure Python (exactly as Hugging Face `tokenizers` does), the
encoder graph turns it into L2-normalised sentence embeddings, and a second small graph
(`similarity`) does the heavy math of search and tagging: scores and top-k. Python keeps the
embeddings as one flat float32 buffer and never loops over floats.

Documented behaviour for awkward input: texts longer than MAX_TOKENS tokens are truncated (the
result says which were); empty or blank texts are refused; more than MAX_BATCH texts per call
are refused (split the batch) so that a call's activations stay a few hundred MB at most.

The notes live in the CRDT document `ctx.state("notes")` (map "notes": id -> {text, tags,
added}; map "labels": name -> description), so they persist on the device and sync between a
user's devices; the embeddings are a cache of them in this worker's memory (`Index`).
"""

import array
import secrets
import time

from waystation.device import Tensor, export
from waystation.device.tokenizers import WordPieceTokenizer

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
MAX_BATCH = 128
DIM = 384
TAG_THRESHOLD = 0.2  # a label applies when its cosine is at least this...
TAG_MARGIN = 0.05  # ...and within this of the best label
DEFAULT_LABELS = {
    "work": "work, meetings, projects, deadlines and colleagues",
    "shopping": "shopping list, groceries and things to buy",
    "health": "health, exercise, doctor, sleep and food",
    "travel": "travel, trips, flights, hotels and places to visit",
    "ideas": "ideas, plans, thoughts and things to try",
}


class Index:
    """Embeddings of the notes seen so far, a cache of the state: row i of `vectors` is note `ids[i]`.

    The notes themselves (text, tags, when added) live in the CRDT document "notes", so they
    persist on the device and sync between devices; a note that arrives from elsewhere is
    embedded here the first time a search needs it.
    """

    def __init__(self):
        self.ids: list[str] = []
        self.texts: dict[str, str] = {}  # the text each row was embedded from
        self.vectors = array.array("f")
        self.labels: dict[str, str] = {}  # the labels `label_vectors` were embedded from
        self.label_vectors = array.array("f")


_tokenizer = None
_index = Index()


def tokenizer(ctx) -> WordPieceTokenizer:
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = WordPieceTokenizer.from_file(ctx.files.path("tokenizer.json"))
    return _tokenizer


async def encode(ctx, texts: list[str]) -> tuple[Tensor, list]:
    """Embed `texts`: a [len(texts), 384] float32 tensor, and the tokenizer's encodings."""
    if not texts:
        raise ValueError("texts is empty: give at least one text")
    if len(texts) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} texts per call, got {len(texts)}: split the batch")
    for i, text in enumerate(texts):
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or blank")
    with ctx.metrics.timer("tokenize_ms"):
        encodings = tokenizer(ctx).encode_batch(texts, max_length=MAX_TOKENS, padding="longest")
        shape = (len(encodings), len(encodings[0].ids))
        feeds = {
            name: Tensor("int64", array.array("q", [v for e in encodings for v in getattr(e, field)]), shape)
            for name, field in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))
        }
    with ctx.metrics.timer("model_ms"):
        out = await ctx.models["encoder"].run(feeds)
    return out["sentence_embedding"], encodings


@export
async def embed(ctx, texts: list[str]) -> dict:
    """Sentence embeddings (a float32 tensor [n, 384]), which texts were truncated, token counts."""
    vectors, encodings = await encode(ctx, texts)
    return {
        "embeddings": vectors,
        "truncated": [e.truncated for e in encodings],
        "tokens": [sum(e.attention_mask) for e in encodings],
    }


@export
async def add_notes(ctx, texts: list[str]) -> list[dict]:
    """Add notes; each is embedded and tagged. Returns the new notes with their ids and tags."""
    vectors, encodings = await encode(ctx, texts)
    ids = [secrets.token_hex(8) for _ in texts]  # unique across devices: notes sync between them
    _remember(ids, texts, vectors)
    doc = ctx.state("notes")
    tags = await _tag(ctx, vectors, doc.map("labels").to_dict() or DEFAULT_LABELS)
    added = time.time() * 1000
    with doc.transaction():  # one update: other devices get all the notes or none
        stored = doc.map("notes")
        for i, (note_id, text) in enumerate(zip(ids, texts)):
            stored[note_id] = {"text": text, "tags": tags[i], "added": added + i}
    return [{"id": i, "text": t, "tags": g, "truncated": e.truncated} for i, t, g, e in zip(ids, texts, tags, encodings)]


@export
async def search(ctx, query: str, k: int = 5) -> list[dict]:
    """The `k` notes closest in meaning to `query`, best first, with their cosine scores."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not query.strip():
        raise ValueError("query is empty: type what you are looking for")
    stored = ctx.state("notes").map("notes").to_dict()
    if not stored:
        return []
    await _index_notes(ctx, stored)
    vectors, _ = await encode(ctx, [query])
    values, indices = await _top_k(ctx, vectors, _index.vectors, k)
    return [_note(_index.ids[i], stored[_index.ids[i]]) | {"score": round(s, 6)} for i, s in zip(indices[0], values[0])]


@export
async def set_labels(ctx, labels: dict[str, str]) -> list[dict]:
    """Replace the tag labels ({name: description}) on every device and re-tag every note."""
    if not labels:
        raise ValueError("labels is empty: give at least one {name: description}")
    for name, description in labels.items():
        if not name.strip() or not description.strip():
            raise ValueError(f"label {name!r}: give a name and a description")
    doc = ctx.state("notes")
    stored = doc.map("notes").to_dict()
    await _index_notes(ctx, stored)
    row_of = {note_id: row for row, note_id in enumerate(_index.ids)}  # not ids.index(): n lookups of O(n)
    rows = [row_of[note_id] for note_id in stored]
    tags = await _tag(ctx, _rows(rows), labels) if rows else []
    with doc.transaction():
        saved = doc.map("labels")
        saved.clear()
        saved.update(labels)
        notes_map = doc.map("notes")
        for note_id, note_tags in zip(stored, tags):
            notes_map[note_id] = stored[note_id] | {"tags": note_tags}
    return notes(ctx)


@export
def notes(ctx) -> list[dict]:
    """Every note on this device (synced ones included), oldest first."""
    stored = ctx.state("notes").map("notes").to_dict()
    ordered = sorted(stored.items(), key=lambda item: (item[1].get("added", 0), item[0]))
    return [_note(note_id, note) for note_id, note in ordered]


@export
def remove_note(ctx, id: str) -> bool:
    """Delete a note, on every device once synced."""
    stored = ctx.state("notes").map("notes")
    if id not in stored:
        raise KeyError(f"no note with id {id!r}")
    del stored[id]
    return True


def _note(note_id: str, note: dict) -> dict:
    return {"id": note_id, "text": note["text"], "tags": note.get("tags", [])}


def _remember(ids: list[str], texts: list[str], vectors: Tensor) -> None:
    _index.vectors.frombytes(vectors.data.cast("B"))
    _index.ids += ids
    _index.texts.update(zip(ids, texts))


async def _index_notes(ctx, stored: dict) -> None:
    """Bring the embedding cache to the notes in `stored`: drop what went, embed what came."""
    keep = [row for row, note_id in enumerate(_index.ids)
            if note_id in stored and stored[note_id]["text"] == _index.texts[note_id]]
    if len(keep) < len(_index.ids):
        vectors = bytes(_rows(keep).data.cast("B")) if keep else b""
        ids = [_index.ids[row] for row in keep]
        _index.ids, _index.texts, _index.vectors = ids, {i: _index.texts[i] for i in ids}, array.array("f", vectors)
    missing = [note_id for note_id in stored if note_id not in _index.texts]
    for start in range(0, len(missing), MAX_BATCH):
        batch = missing[start : start + MAX_BATCH]
        texts = [stored[note_id]["text"] for note_id in batch]
        vectors, _ = await encode(ctx, texts)
        _remember(batch, texts, vectors)


def _rows(rows: list[int]) -> Tensor:
    """The embeddings of index rows `rows`, as one [len(rows), DIM] tensor (byte slices, no float loop)."""
    data = memoryview(_index.vectors).cast("B")
    width = DIM * 4
    return Tensor("float32", b"".join(data[r * width : (r + 1) * width] for r in rows), (len(rows), DIM))


async def _embed_labels(ctx, labels: dict[str, str]) -> None:
    if labels != _index.labels:
        vectors, _ = await encode(ctx, list(labels.values()))
        _index.labels = dict(labels)
        _index.label_vectors = array.array("f", vectors.data.cast("B").cast("f"))


async def _tag(ctx, vectors: Tensor, labels: dict[str, str]) -> list[list[str]]:
    """The labels each row of `vectors` is close to."""
    await _embed_labels(ctx, labels)
    names = list(_index.labels)
    values, indices = await _top_k(ctx, vectors, _index.label_vectors, len(names))
    tags = []
    for row_values, row_indices in zip(values, indices):
        best = row_values[0]
        tags.append([names[i] for i, s in zip(row_indices, row_values)
                     if s >= TAG_THRESHOLD and s >= best - TAG_MARGIN])
    return tags


async def _top_k(ctx, queries: Tensor, index: array.array, k: int) -> tuple[list, list]:
    """Top-k cosine scores of each query against `index` rows, computed by the similarity graph."""
    rows = len(index) // DIM
    with ctx.metrics.timer("similarity_ms"):
        out = await ctx.models["similarity"].run({
            "queries": queries,
            "index": Tensor("float32", bytes(index), (rows, DIM)),  # a copy: `index` may grow later
            "k": Tensor("int64", [min(k, rows)], (1,)),
        })
    return out["values"].tolist(), out["indices"].tolist()
