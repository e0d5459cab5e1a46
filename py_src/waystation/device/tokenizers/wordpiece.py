"""`WordPieceTokenizer`: a BERT tokenizer read from a Hugging Face tokenizer.json.

Pure Python, standard library only, so it runs in Pyodide as on CPython, and its ids, masks
and type ids equal the Rust `tokenizers` library's for the components it supports (added
tokens, BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing/BertProcessing);
a tokenizer.json naming any other component is refused with a ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._added import AddedTokens
from ._model import WordPieceModel
from ._normalize import BertNormalizer
from ._pretokenize import BertPreTokenizer
from ._template import Template
from .encoding import Encoding

__all__ = ["WordPieceTokenizer"]

# None: no padding; "longest": to the longest of the batch; "max_length": to max_length;
# an int: to that length (longer encodings are left as they are, never cut).
Padding = str | int | None

DEFAULT_MAX_LENGTH = 512  # BERT's position embeddings
_NO_LIMIT = 1 << 62


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer that matches Hugging Face `tokenizers` id for id.

        >>> tok = WordPieceTokenizer.from_file(model_dir / "tokenizer.json")
        >>> enc = tok.encode("Hello world!")
        >>> enc.ids, enc.tokens
        ([101, 7592, 2088, 999, 102], ['[CLS]', 'hello', 'world', '!', '[SEP]'])
        >>> [e.attention_mask for e in tok.encode_batch(["a", "b c"])]
        [[1, 1, 1, 0], [1, 1, 1, 1]]

    `max_length` counts the special tokens; a longer text is cut at its end (or its start,
    if the json's truncation says "Left") and its encoding says `truncated=True`. Padding is
    chosen per call; the pad token, id, type id and side come from the json's "padding"
    section if it has one, else "[PAD]" on the right.
    """

    def __init__(self, config: dict[str, Any], *, max_length: int | None = None) -> None:
        self.normalize = _normalizer(config.get("normalizer"))
        self.pre_tokenize = _pre_tokenizer(config.get("pre_tokenizer"))
        self.model = _model(config.get("model"))
        self.added = AddedTokens(config.get("added_tokens") or [], self.normalize)
        self.template = Template.from_config(config.get("post_processor"))
        truncation = config.get("truncation") or {}
        self._cut_end = _side(truncation, "truncation") == "Right"
        if max_length is None:
            max_length = truncation.get("max_length") or DEFAULT_MAX_LENGTH
        self.max_length = self._check_max_length(max_length)
        padding = config.get("padding") or {}
        self._pad_end = _side(padding, "padding") == "Right"
        pad_token = padding.get("pad_token", "[PAD]")
        self.pad_id: int | None = padding.get("pad_id", self.model.vocab.get(pad_token))
        self.pad_token, self.pad_type_id = pad_token, padding.get("pad_type_id", 0)

    @classmethod
    def from_json(cls, text: str, *, max_length: int | None = None) -> WordPieceTokenizer:
        """From the text of a tokenizer.json; `max_length` defaults to its truncation, else 512."""
        return cls(json.loads(text), max_length=max_length)

    @classmethod
    def from_file(cls, path: str | Path, *, max_length: int | None = None) -> WordPieceTokenizer:
        """From a tokenizer.json file. `max_length` defaults to, in order:

        1. `max_seq_length` of a sentence_bert_config.json beside it: what sentence-transformers
           encodes with (256 for all-MiniLM-L6-v2);
        2. the tokenizer.json's own truncation.max_length (128 there: saved from the training
           run, and ignored by transformers and sentence-transformers alike);
        3. `model_max_length` of a tokenizer_config.json beside it (512 there);
        4. 512.
        """
        path = Path(path)
        config = json.loads(path.read_text(encoding="utf-8"))
        if max_length is None:
            max_length = _default_max_length(path.parent, config)
        return cls(config, max_length=max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.model.vocab)

    def token_to_id(self, token: str) -> int | None:
        return self.model.vocab.get(token)

    def encode(self, text: str, *, max_length: int | None = None,
               padding: Padding = None) -> Encoding:
        """Encode one text: `[CLS] pieces... [SEP]`, cut to `max_length`, padded if asked."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        limit = self._check_max_length(max_length)
        encoding = self._encode(text, limit)
        return self._pad([encoding], padding, limit)[0]

    def encode_batch(self, texts: Iterable[str], *, max_length: int | None = None,
                     padding: Padding = "longest") -> list[Encoding]:
        """Encode many texts, padded to the longest of them unless `padding` says otherwise."""
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts, not one str: use encode()")
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be str, not {type(text).__name__}")
        limit = self._check_max_length(max_length)
        return self._pad([self._encode(text, limit) for text in texts], padding, limit)

    def _encode(self, text: str, limit: int) -> Encoding:
        budget = limit - self.template.added
        # Cutting the end: stop as soon as one piece too many is known.
        ids, tokens = self._tokenize(text, budget + 1 if self._cut_end else _NO_LIMIT)
        truncated = len(ids) > budget
        if truncated:
            keep = slice(0, budget) if self._cut_end else slice(len(ids) - budget, None)
            ids, tokens = ids[keep], tokens[keep]
        return self.template.apply(ids, tokens, truncated)

    def _tokenize(self, text: str, stop: int) -> tuple[list[int], list[str]]:
        ids: list[int] = []
        tokens: list[str] = []
        tokenize = self.model.tokenize
        for piece, added_id in self.added.segments(text):
            if added_id is not None:
                ids.append(added_id)
                tokens.append(piece)
                continue
            for word in self.pre_tokenize(piece):
                word_ids, word_tokens = tokenize(word)
                ids += word_ids
                tokens += word_tokens
                if len(ids) >= stop:
                    return ids, tokens
        return ids, tokens

    def _check_max_length(self, max_length: int | None) -> int:
        if max_length is None:
            return self.max_length
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise TypeError(f"max_length must be an int, not {type(max_length).__name__}")
        if max_length < self.template.added:
            raise ValueError(f"max_length={max_length} leaves no room for the "
                             f"{self.template.added} special tokens")
        return max_length

    def _pad(self, encodings: list[Encoding], padding: Padding, limit: int) -> list[Encoding]:
        length = _pad_length(padding, encodings, limit)
        if length is None or all(len(e) >= length for e in encodings):
            return encodings
        if self.pad_id is None:
            raise ValueError(f"cannot pad: the pad token {self.pad_token!r} is not in the vocabulary")
        return [self._pad_one(e, length - len(e)) for e in encodings]

    def _pad_one(self, e: Encoding, n: int) -> Encoding:
        if n <= 0:
            return e
        assert self.pad_id is not None
        ids, mask, types, tokens = [self.pad_id] * n, [0] * n, [self.pad_type_id] * n, [self.pad_token] * n
        if self._pad_end:
            return Encoding(e.ids + ids, e.attention_mask + mask, e.type_ids + types,
                            e.tokens + tokens, e.truncated)
        return Encoding(ids + e.ids, mask + e.attention_mask, types + e.type_ids,
                        tokens + e.tokens, e.truncated)


def _pad_length(padding: Padding, encodings: list[Encoding], limit: int) -> int | None:
    if padding is None:
        return None
    if padding == "longest":
        return max(map(len, encodings), default=0)
    if padding == "max_length":
        return limit
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise ValueError(f"padding must be None, 'longest', 'max_length' or a length, not {padding!r}")


def _kind(config: dict[str, Any]) -> Any:
    return config.get("type")


def _normalizer(config: dict[str, Any] | None) -> Callable[[str], str]:
    if config is None:
        return str
    if _kind(config) != "BertNormalizer":
        raise ValueError(f"unsupported normalizer {_kind(config)!r}: expected BertNormalizer or null")
    return BertNormalizer.from_config(config)


def _pre_tokenizer(config: dict[str, Any] | None) -> Callable[[str], list[str]]:
    if config is None:
        return lambda text: [text] if text else []
    if _kind(config) != "BertPreTokenizer":
        raise ValueError(f"unsupported pre_tokenizer {_kind(config)!r}: expected BertPreTokenizer or null")
    return BertPreTokenizer()


def _model(config: dict[str, Any] | None) -> WordPieceModel:
    kind = None if config is None else _kind(config)
    if config is None or kind != "WordPiece":
        raise ValueError(f"unsupported model {kind!r}: expected WordPiece")
    return WordPieceModel.from_config(config)


def _side(config: dict[str, Any], what: str) -> str:
    side = config.get("direction", "Right")
    if side not in ("Right", "Left"):
        raise ValueError(f"unsupported {what} direction {side!r}: expected 'Right' or 'Left'")
    return str(side)


def _default_max_length(folder: Path, config: dict[str, Any]) -> int:
    sentence = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(sentence, int) and sentence > 0:
        return sentence
    truncation = (config.get("truncation") or {}).get("max_length")
    if isinstance(truncation, int) and truncation > 0:
        return truncation
    model_max = _read_json(folder / "tokenizer_config.json").get("model_max_length")
    # transformers writes a huge number (1e30) for "no limit".
    if isinstance(model_max, int) and 0 < model_max <= 1_000_000:
        return model_max
    return DEFAULT_MAX_LENGTH


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}
