"""The MiniLM recipe: its ONNX encoders agree with sentence-transformers, and its build is reproducible.

The reference embeddings come from sentence-transformers itself (models/minilm/make_reference.py,
run once with torch in a throwaway venv); these tests need only onnxruntime and `tokenizers`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "minilm_reference.json"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
MIN_COSINE = {"encoder_fp32": 0.9999, "encoder_int8": 0.99}
VARIANTS = sorted(MIN_COSINE)


def load_recipe() -> ModuleType:
    """models/ holds bundle sources, not a package: load recipe.py by path."""
    spec = importlib.util.spec_from_file_location("minilm_recipe", ROOT / "models" / "minilm" / "recipe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return load_recipe().build(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tokenizer(built: dict[str, Path]) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(built["tokenizer"]))
    tokenizer.enable_truncation(MAX_TOKENS)  # the file says 128; sentence-transformers uses 256
    tokenizer.no_padding()
    return tokenizer


@pytest.fixture(scope="session")
def sessions(built: dict[str, Path]) -> dict[str, ort.InferenceSession]:
    return {v: ort.InferenceSession(str(built[v]), providers=["CPUExecutionProvider"]) for v in VARIANTS}


def embed(session: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str], pad_to: int | None = None) -> np.ndarray:
    """Embeddings of `texts`, padded to the longest text (or to `pad_to` tokens)."""
    encodings = tokenizer.encode_batch(texts)
    width = pad_to or max(len(e.ids) for e in encodings)

    def column(field: str) -> np.ndarray:
        return np.array([getattr(e, field) + [0] * (width - len(e.ids)) for e in encodings], dtype=np.int64)

    feeds = {"input_ids": column("ids"), "attention_mask": column("attention_mask"), "token_type_ids": column("type_ids")}
    return session.run(["sentence_embedding"], feeds)[0]


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)


def sentences(reference: dict) -> list[str]:
    return [item["sentence"] for item in reference["items"]]


def test_fixture_tokens_match_the_tokenizer(reference, tokenizer):
    counts = [len(e.ids) for e in tokenizer.encode_batch(sentences(reference))]
    assert counts == [item["tokens"] for item in reference["items"]]
    assert max(counts) == MAX_TOKENS  # one sentence is truncated, as sentence-transformers truncates it


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_sentence_matches_sentence_transformers(variant, sessions, tokenizer, reference):
    want = np.array([item["embedding"] for item in reference["items"]])
    got = np.stack([embed(sessions[variant], tokenizer, [s])[0] for s in sentences(reference)])
    scores = cosines(got, want)
    worst = int(scores.argmin())
    assert scores.min() >= MIN_COSINE[variant], f"{sentences(reference)[worst]!r}: cosine {scores[worst]:.6f}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_sentences_match_sentence_transformers(variant, sessions, tokenizer, reference):
    want = np.array([item["embedding"] for item in reference["items"]])
    assert cosines(embed(sessions[variant], tokenizer, sentences(reference)), want).min() >= MIN_COSINE[variant]


@pytest.mark.parametrize("variant", VARIANTS)
def test_embeddings_have_unit_norm(variant, sessions, tokenizer, reference):
    got = embed(sessions[variant], tokenizer, sentences(reference))
    assert got.shape == (len(reference["items"]), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batch_equals_single(sessions, tokenizer, reference):
    # fp32 only: int8 quantizes activations with one scale per batch, so its rows depend on their
    # neighbours (by up to ~0.02 per component); its batched cosines are checked above instead.
    texts = sentences(reference)
    batch = embed(sessions["encoder_fp32"], tokenizer, texts)
    singles = np.stack([embed(sessions["encoder_fp32"], tokenizer, [t])[0] for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_padding_does_not_change_an_embedding(sessions, tokenizer):
    text = ["Padding tokens are masked out of attention and of the mean."]
    plain = embed(sessions["encoder_fp32"], tokenizer, text)
    padded = embed(sessions["encoder_fp32"], tokenizer, text, pad_to=64)
    np.testing.assert_allclose(padded, plain, atol=1e-5)
    padded_int8 = embed(sessions["encoder_int8"], tokenizer, text, pad_to=64)
    assert cosines(padded_int8, plain).min() >= MIN_COSINE["encoder_int8"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_signature(variant, sessions):
    inputs = {i.name: (i.type, i.shape) for i in sessions[variant].get_inputs()}
    names = ("input_ids", "attention_mask", "token_type_ids")
    assert inputs == {name: ("tensor(int64)", ["batch", "sequence"]) for name in names}
    [output] = sessions[variant].get_outputs()
    assert (output.name, output.type, output.shape) == ("sentence_embedding", "tensor(float)", ["batch", 384])


def test_onnxruntime_fuses_the_fp32_encoder(built, tmp_path):
    import onnx

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(built["encoder_fp32"]), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert {op: ops.count(op) for op in ("Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization")} == {
        "Attention": 6, "SkipLayerNormalization": 12, "BiasGelu": 6, "EmbedLayerNormalization": 1}


def test_build_is_reproducible(built, tmp_path):
    again = load_recipe().build(tmp_path / "again")
    assert sorted(again) == sorted(built) == ["encoder_fp32", "encoder_int8", "tokenizer"]
    for key in built:
        assert _sha256(again[key]) == _sha256(built[key]), f"{built[key].name} differs between two builds"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
