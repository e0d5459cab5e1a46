"""BertPreTokenizer, as the Rust `tokenizers` library runs it (pre_tokenizers/bert.rs).

Split on `char::is_whitespace` (dropping it), then isolate every punctuation code point
(ASCII punctuation, or a P* category of the `unicode_categories` crate) as its own word.
"""

from __future__ import annotations

import re
from functools import cache

from . import _unicode
from ._charsets import ASTRAL, class_body, has_astral, parse, split_planes

__all__ = ["BertPreTokenizer"]

_WHITESPACE = parse(_unicode.WHITESPACE)
_PUNCTUATION = parse(_unicode.PUNCTUATION)


@cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(for BMP-only texts, for any text): `punctuation | run of other non-space`."""
    ws_bmp, ws_astral = split_planes(_WHITESPACE)
    p_bmp, p_astral = split_planes(_PUNCTUATION)
    punct_bmp = f"[{class_body(p_bmp)}]"
    punct_any = f"{punct_bmp}|(?=[{ASTRAL}])[{class_body(p_astral)}]" if p_astral else punct_bmp
    plain_bmp = f"[^{class_body(ws_bmp + p_bmp)}{ASTRAL}]"
    excluded = ws_astral + p_astral
    plain_astral = f"(?![{class_body(excluded)}])[{ASTRAL}]" if excluded else f"[{ASTRAL}]"
    bmp_only = re.compile(f"{punct_bmp}|{plain_bmp}+")
    any_text = re.compile(f"{punct_any}|(?:{plain_bmp}++|{plain_astral})++")
    return bmp_only, any_text


class BertPreTokenizer:
    """`BertPreTokenizer()("hi, you") == ["hi", ",", "you"]`"""

    def __init__(self) -> None:
        self._bmp_words, self._any_words = _patterns()

    def __call__(self, text: str) -> list[str]:
        words = self._any_words if has_astral(text) else self._bmp_words
        return words.findall(text)
