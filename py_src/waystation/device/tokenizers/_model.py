"""The WordPiece model: greedy longest-match-first sub-words of one word (models/wordpiece)."""

from __future__ import annotations

from typing import Any

__all__ = ["WordPieceModel"]

Pieces = tuple[tuple[int, ...], tuple[str, ...]]


class WordPieceModel:
    """`WordPieceModel(vocab).tokenize("unaffable")` -> ((ids...), ("un", "##aff", "##able"))"""

    def __init__(self, vocab: dict[str, int], *, unk_token: str = "[UNK]",
                 continuing_subword_prefix: str = "##", max_input_chars_per_word: int = 100,
                 cache_size: int = 10_000) -> None:
        if unk_token not in vocab:
            raise ValueError(f"the WordPiece unk_token {unk_token!r} is not in the vocabulary")
        self.vocab = vocab
        self.unk: Pieces = ((vocab[unk_token],), (unk_token,))
        self.prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        # No vocabulary entry is longer, so no longer candidate needs looking up.
        self._longest = max(map(len, vocab), default=0)
        self._cache: dict[str, Pieces] = {}
        self._cache_size = cache_size

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WordPieceModel:
        options = ("unk_token", "continuing_subword_prefix", "max_input_chars_per_word")
        return cls(config["vocab"], **{key: config[key] for key in options if key in config})

    def tokenize(self, word: str) -> Pieces:
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = self._tokenize(word)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[word] = pieces
        return pieces

    def _tokenize(self, word: str) -> Pieces:
        if len(word) > self.max_input_chars_per_word:
            return self.unk
        vocab, longest = self.vocab, self._longest
        ids: list[int] = []
        tokens: list[str] = []
        start, head = 0, ""
        while start < len(word):
            for end in range(min(len(word), start + longest), start, -1):
                token = head + word[start:end]
                token_id = vocab.get(token)
                if token_id is not None:
                    break
            else:
                return self.unk  # one piece matches nothing: the whole word is unknown
            ids.append(token_id)
            tokens.append(token)
            start, head = end, self.prefix
        return tuple(ids), tuple(tokens)
