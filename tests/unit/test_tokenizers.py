"""The pure-Python WordPiece tokenizer against the real Hugging Face `tokenizers` library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers

import waystation.device.tokenizers as package
from waystation.device.tokenizers import Encoding, WordPieceTokenizer
from waystation.device.tokenizers._normalize import BertNormalizer
from waystation.device.tokenizers._pretokenize import BertPreTokenizer

from tokenizer_corpus import CORPUS, random_texts

# Every code point of planes 0-3 and 14; every 251st of the unassigned and private planes.
CODE_POINTS = [cp for cp in range(0x40000) if not 0xD800 <= cp <= 0xDFFF] + [
    *range(0x40000, 0xE0000, 251), *range(0xE0000, 0xF0000), *range(0xF0000, 0x110000, 251)]


@pytest.fixture(scope="module")
def tokenizer_json(minilm_dir: Path) -> Path:
    return minilm_dir / "tokenizer.json"


@pytest.fixture(scope="module")
def config(tokenizer_json: Path) -> dict[str, Any]:
    return json.loads(tokenizer_json.read_text())


@pytest.fixture(scope="module")
def ours(tokenizer_json: Path) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_file(tokenizer_json)


def reference(config: dict[str, Any], max_length: int, pad: dict[str, Any] | None = None) -> Tokenizer:
    """The Rust tokenizer, truncating as ours does and padding only when asked."""
    tok = Tokenizer.from_str(json.dumps(config))
    side = (config.get("truncation") or {}).get("direction", "Right").lower()
    tok.enable_truncation(max_length, direction=side)
    tok.no_padding()
    if pad is not None:
        tok.enable_padding(**pad)
    return tok


def view(e: Any) -> tuple[Any, ...]:
    truncated = e.truncated if isinstance(e, Encoding) else bool(e.overflowing)
    return e.ids, e.attention_mask, e.type_ids, e.tokens, truncated


def assert_same(texts: list[str], got: list[Encoding], want: list[Any]) -> None:
    for text, g, w in zip(texts, got, want, strict=True):
        assert view(g) == view(w), f"differs on {text[:200]!r}"


# -- the corpus and random texts, one at a time and as batches ---------------------------------

@pytest.mark.parametrize("max_length", [256, 12])
@pytest.mark.parametrize("group", sorted(CORPUS))
def test_corpus_matches_reference(ours, config, group, max_length):
    texts = CORPUS[group]
    hf = reference(config, max_length)
    assert_same(texts, [ours.encode(t, max_length=max_length) for t in texts],
                [hf.encode(t) for t in texts])


def test_long_inputs_are_truncated_like_reference(ours, config):
    texts = CORPUS["long_texts"]
    got = [ours.encode(t) for t in texts]
    assert [len(e) for e in got] == [256, 256, 256, 256, 256, 256]
    assert [e.truncated for e in got] == [True, True, True, True, False, True]
    assert_same(texts, got, reference(config, 256).encode_batch(texts))


@pytest.mark.parametrize("max_length", [256, 7])
def test_random_unicode_matches_reference(ours, config, max_length):
    texts = random_texts(4000, seed=max_length)
    got = ours.encode_batch(texts, max_length=max_length, padding=None)
    assert_same(texts, got, reference(config, max_length).encode_batch(texts))


def test_every_code_point_alone_matches_reference(ours, config):
    texts = [chr(cp) for cp in CODE_POINTS[::7]] + [f"a{chr(cp)}b" for cp in CODE_POINTS[3::7]]
    got = ours.encode_batch(texts, padding=None)
    assert_same(texts, got, reference(config, 256).encode_batch(texts))


# -- the Unicode tables, over the whole code space, in long strings ---------------------------

BERT_OPTIONS = [
    dict(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True),
    dict(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False),
    dict(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=True),
    dict(clean_text=True, handle_chinese_chars=False, strip_accents=None, lowercase=False),
]


def first_difference(a: str, b: str) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"at {i}: ours {a[max(i - 5, 0):i + 5]!r}, reference {b[max(i - 5, 0):i + 5]!r}"


# Adjacent code points are the hard case (marks reorder and combine); one spaced run as well.
NORMALIZER_CASES = [(options, "") for options in BERT_OPTIONS] + [(BERT_OPTIONS[0], " ")]


@pytest.mark.parametrize(("options", "separator"), NORMALIZER_CASES)
def test_normalizer_matches_reference_on_every_code_point(options, separator):
    text = separator.join(map(chr, CODE_POINTS))
    got = BertNormalizer(**options)(text)
    want = normalizers.BertNormalizer(**options).normalize_str(text)
    assert got == want, first_difference(got, want)


@pytest.mark.parametrize("separator", ["", "a"])
def test_pre_tokenizer_matches_reference_on_every_code_point(separator):
    text = separator.join(map(chr, CODE_POINTS))
    want = [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(text)]
    assert BertPreTokenizer()(text) == want


# -- batches and padding ----------------------------------------------------------------------

def test_batch_pads_to_longest_like_reference(ours, config):
    texts = ["a", "b c", "", "Hello, world! How are you today?", "你好"]
    got = ours.encode_batch(texts, max_length=256, padding="longest")
    want = reference(config, 256, pad=dict(pad_id=0, pad_token="[PAD]")).encode_batch(texts)
    assert_same(texts, got, want)
    assert {len(e) for e in got} == {11}


def test_fixed_padding_never_cuts(ours, config):
    texts = ["short", " ".join(["word"] * 40)]
    got = ours.encode_batch(texts, max_length=32, padding=16)
    want = reference(config, 32, pad=dict(length=16, pad_id=0, pad_token="[PAD]")).encode_batch(texts)
    assert_same(texts, got, want)
    assert [len(e) for e in got] == [16, 32]


def test_padding_to_max_length(ours):
    enc = ours.encode("hello", max_length=8, padding="max_length")
    assert enc.ids == [101, 7592, 102, 0, 0, 0, 0, 0]
    assert enc.attention_mask == [1, 1, 1, 0, 0, 0, 0, 0]
    assert enc.tokens[-1] == "[PAD]" and not enc.truncated


def test_left_padding_and_truncation_follow_the_json(config):
    config = {**config, "truncation": {**config["truncation"], "direction": "Left"},
              "padding": {**config["padding"], "direction": "Left"}}
    ours = WordPieceTokenizer.from_json(json.dumps(config), max_length=6)
    texts = ["one two three four five six seven", "one"]
    want = reference(config, 6, pad=dict(direction="left", pad_id=0, pad_token="[PAD]"))
    assert_same(texts, ours.encode_batch(texts), want.encode_batch(texts))


def test_lone_surrogates_are_dropped_where_the_reference_refuses(ours, config):
    # A Rust string cannot hold one; the library raises. Dropping it is what its Cs class would do.
    with pytest.raises(TypeError):
        reference(config, 256).encode("a\ud800b")
    assert ours.encode("a\ud800b \udfffc").tokens == ["[CLS]", "ab", "c", "[SEP]"]


def test_empty_and_blank_texts_give_cls_sep(ours):
    for text in ["", "   ", "\x00\u200b"]:
        assert ours.encode(text).tokens == ["[CLS]", "[SEP]"]


# -- loading ----------------------------------------------------------------------------------

def test_default_max_length_is_sentence_transformers(ours, tokenizer_json, minilm_dir):
    assert json.loads((minilm_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    assert ours.max_length == 256
    # Without the folder around it, the json's own truncation is all there is.
    assert WordPieceTokenizer.from_json(tokenizer_json.read_text()).max_length == 128
    assert WordPieceTokenizer.from_file(tokenizer_json, max_length=64).max_length == 64


def test_lone_file_falls_back_to_tokenizer_config(tmp_path, config):
    del config["truncation"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))
    assert WordPieceTokenizer.from_file(tmp_path / "tokenizer.json").max_length == 512
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 384}')
    assert WordPieceTokenizer.from_file(tmp_path / "tokenizer.json").max_length == 384


def test_normalized_added_token_matches_reference(config):
    added = {"id": len(config["model"]["vocab"]), "content": "Waystation", "single_word": False,
             "lstrip": False, "rstrip": False, "normalized": True, "special": False}
    config = {**config, "added_tokens": [*config["added_tokens"], added]}
    texts = ["waystation", "WAYSTATION rocks", "the waystations", "Wäystation", "[CLS]waystation"]
    ours = WordPieceTokenizer.from_json(json.dumps(config))
    assert_same(texts, ours.encode_batch(texts, padding=None), reference(config, 128).encode_batch(texts))


def test_public_names_are_sorted():
    assert package.__all__ == sorted(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)


# -- errors -----------------------------------------------------------------------------------

def test_non_str_input_is_a_type_error_naming_the_item(ours):
    with pytest.raises(TypeError, match="text must be str, not bytes"):
        ours.encode(b"hello")
    with pytest.raises(TypeError, match=r"texts\[2\] must be str, not NoneType"):
        ours.encode_batch(["a", "b", None])
    with pytest.raises(TypeError, match="not one str"):
        ours.encode_batch("hello")


@pytest.mark.parametrize("bad", ["longest_first", -1, 2.5, True])
def test_bad_padding_is_a_value_error(ours, bad):
    with pytest.raises(ValueError, match="padding must be"):
        ours.encode_batch(["a", "b c"], padding=bad)


def test_max_length_must_leave_room_for_special_tokens(ours):
    assert ours.encode("hello", max_length=2).tokens == ["[CLS]", "[SEP]"]
    with pytest.raises(ValueError, match="max_length=1 leaves no room"):
        ours.encode("hello", max_length=1)
    with pytest.raises(TypeError, match="max_length must be an int"):
        ours.encode("hello", max_length="8")


@pytest.mark.parametrize(("section", "value", "message"), [
    ("normalizer", {"type": "Sequence", "normalizers": []}, "unsupported normalizer 'Sequence'"),
    ("pre_tokenizer", {"type": "ByteLevel"}, "unsupported pre_tokenizer 'ByteLevel'"),
    ("model", {"type": "BPE", "vocab": {}, "merges": []}, "unsupported model 'BPE'"),
    ("post_processor", {"type": "RobertaProcessing"}, "unsupported post_processor 'RobertaProcessing'"),
    ("truncation", {"max_length": 8, "direction": "Middle"}, "unsupported truncation direction"),
])
def test_unsupported_components_are_named(config, section, value, message):
    with pytest.raises(ValueError, match=message):
        WordPieceTokenizer.from_json(json.dumps({**config, section: value}))


def test_unsupported_added_token_options_are_named(config):
    tokens = [{**config["added_tokens"][0], "lstrip": True}]
    with pytest.raises(ValueError, match=r"unsupported added token '\[PAD\]': lstrip"):
        WordPieceTokenizer.from_json(json.dumps({**config, "added_tokens": tokens}))
