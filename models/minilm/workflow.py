"""Notes: offline semantic search and zero-shot tagging with all-MiniLM-L6-v2.

Text is tokenized here in pure Python (exactly as Hugging Face `tokenizers` does), the
encoder graph turns it into L2-normalised sentence embeddings, and a second small graph
(`similarity`) does the heavy math of search and tagging: scores and top-k. Python keeps the
embeddings as one flat float32 buffer and never loops over floats.

Documented behaviour for awkward input: texts longer than MAX_TOKENS tokens are truncated (the
result says which were); empty or blank texts are refused; more than MAX_BATCH texts per call
are refused (split the batch) so that a call's activations stay a few hundred MB at most.
"""

import array

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


class Notes:
    """The notes of this session and their embeddings, row i of `vectors` is note `ids[i]`."""

    def __init__(self):
        self.ids: list[int] = []
        self.texts: dict[int, str] = {}
        self.tags: dict[int, list[str]] = {}
        self.vectors = array.array("f")
        self.next_id = 1
        self.labels: list[str] = []
        self.label_vectors = array.array("f")


_tokenizer = None
_notes = Notes()


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
    ids = list(range(_notes.next_id, _notes.next_id + len(texts)))
    _notes.next_id += len(texts)
    _notes.vectors.frombytes(vectors.data.cast("B"))
    _notes.ids += ids
    _notes.texts.update(zip(ids, texts))
    await _ensure_labels(ctx)
    for note_id, tags in zip(ids, await _tag(ctx, vectors)):
        _notes.tags[note_id] = tags
    return [_note(i) | {"truncated": e.truncated} for i, e in zip(ids, encodings)]


@export
async def search(ctx, query: str, k: int = 5) -> list[dict]:
    """The `k` notes closest in meaning to `query`, best first, with their cosine scores."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not query.strip():
        raise ValueError("query is empty: type what you are looking for")
    if not _notes.ids:
        return []
    vectors, _ = await encode(ctx, [query])
    values, indices = await _top_k(ctx, vectors, _notes.vectors, k)
    return [_note(_notes.ids[i]) | {"score": round(s, 6)} for i, s in zip(indices[0], values[0])]


@export
async def set_labels(ctx, labels: dict[str, str]) -> list[dict]:
    """Replace the tag labels ({name: description}) and re-tag every note."""
    if not labels:
        raise ValueError("labels is empty: give at least one {name: description}")
    vectors, _ = await encode(ctx, list(labels.values()))
    _notes.labels = list(labels)
    _notes.label_vectors = array.array("f", vectors.data.cast("B").cast("f"))
    if _notes.ids:
        all_notes = Tensor("float32", bytes(_notes.vectors), (len(_notes.ids), DIM))
        for note_id, tags in zip(_notes.ids, await _tag(ctx, all_notes)):
            _notes.tags[note_id] = tags
    return notes(ctx)


@export
def notes(ctx) -> list[dict]:
    """Every note of this session, oldest first."""
    return [_note(i) for i in _notes.ids]


@export
def remove_note(ctx, id: int) -> bool:
    """Forget a note and its embedding."""
    if id not in _notes.texts:
        raise KeyError(f"no note with id {id}")
    row = _notes.ids.index(id)
    del _notes.vectors[row * DIM : (row + 1) * DIM]
    del _notes.ids[row], _notes.texts[id], _notes.tags[id]
    return True


def _note(note_id: int) -> dict:
    return {"id": note_id, "text": _notes.texts[note_id], "tags": _notes.tags.get(note_id, [])}


async def _ensure_labels(ctx) -> None:
    if not _notes.labels:
        await set_labels(ctx, DEFAULT_LABELS)


async def _tag(ctx, vectors: Tensor) -> list[list[str]]:
    values, indices = await _top_k(ctx, vectors, _notes.label_vectors, len(_notes.labels))
    tags = []
    for row_values, row_indices in zip(values, indices):
        best = row_values[0]
        tags.append([_notes.labels[i] for i, s in zip(row_indices, row_values)
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
