"""BertNormalizer, as the Rust `tokenizers` library runs it (normalizers/bert.rs).

Steps, each optional: clean_text (drop NUL, U+FFFD and control/format/private-use code points;
any whitespace becomes a space), handle_chinese_chars (spaces around CJK ideographs),
strip_accents (NFD, then drop nonspacing marks; defaults to `lowercase`), lowercase (code point
by code point, so a final capital sigma becomes σ, never ς).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from . import _unicode
from ._charsets import CharSet, parse

__all__ = ["BertNormalizer"]

REMOVED = CharSet(parse(_unicode.REMOVED))
WHITESPACE = CharSet(parse(_unicode.WHITESPACE))
MARKS = CharSet(parse(_unicode.NONSPACING_MARKS))
UNSTABLE = CharSet(parse(_unicode.UNSTABLE))
# Whatever clean_text would change: most texts hold none, and skip both passes.
UNCLEAN = CharSet(REMOVED.spans + [span for span in WHITESPACE.spans if span != (0x20, 0x20)])
UNSTABLE_LOWER = {
    chr(int(a, 16)): chr(int(b, 16))
    for a, b in (pair.split(":") for pair in _unicode.UNSTABLE_LOWER.split())
}
# The CJK blocks of bert.rs `is_chinese_char` (not kana, not hangul).
CJK = CharSet([
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
])
_OPTIONS = ("clean_text", "handle_chinese_chars", "strip_accents", "lowercase")


class BertNormalizer:
    """`BertNormalizer(lowercase=True)("Héllo\\tWORLD") == "hello world"`"""

    def __init__(self, *, clean_text: bool = True, handle_chinese_chars: bool = True,
                 strip_accents: bool | None = None, lowercase: bool = True) -> None:
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.lowercase = lowercase

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BertNormalizer:
        return cls(**{key: config[key] for key in _OPTIONS if key in config})

    def __call__(self, text: str) -> str:
        if self.clean_text:
            text = clean_text(text)
        if self.handle_chinese_chars and not text.isascii():
            text = CJK.sub(" \\g<0> ", text)
        if self.strip_accents and not text.isascii():
            text = MARKS.sub("", nfd(text))
        if self.lowercase:
            text = lowercase(text)
        return text


def clean_text(text: str) -> str:
    if not UNCLEAN.search(text):
        return text
    return WHITESPACE.sub(" ", REMOVED.sub("", text))


def nfd(text: str) -> str:
    """NFD as the Unicode 9 tables of the Rust crate see it: unknown code points stay put."""
    if unicodedata.is_normalized("NFD", text):
        return text
    if not UNSTABLE.search(text):
        return unicodedata.normalize("NFD", text)
    # An unknown code point has class 0 and no decomposition there: nothing moves across it.
    parts = UNSTABLE.split(text)
    parts[::2] = [unicodedata.normalize("NFD", part) for part in parts[::2]]
    return "".join(parts)


def lowercase(text: str) -> str:
    """Rust's `char::to_lowercase`, code point by code point."""
    if text.isascii():
        return text.lower()
    text = text.replace("\u03a3", "\u03c3")  # str.lower() would pick ς at a word's end
    if not UNSTABLE.search(text):
        return text.lower()
    parts = UNSTABLE.split(text)
    parts[::2] = [part.lower() for part in parts[::2]]
    parts[1::2] = ["".join(UNSTABLE_LOWER.get(c, c) for c in run) for run in parts[1::2]]
    return "".join(parts)
