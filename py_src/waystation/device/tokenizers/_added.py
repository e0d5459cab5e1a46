"""Added tokens ([CLS], [MASK], ...): found in the text before anything else runs.

As in the Rust library, tokens with `normalized: false` are matched in the raw text, the
pieces between them are normalized, and the other added tokens are matched in those
normalized pieces. A match is leftmost, then longest; the piece becomes that token's id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["AddedTokens"]

Segment = tuple[str, "int | None"]  # text to pre-tokenize (id None), or an added token and its id


class _Matcher:
    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids
        longest_first = sorted(ids, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, longest_first)))

    def split(self, text: str) -> list[Segment]:
        segments: list[Segment] = []
        pos = 0
        for match in self.pattern.finditer(text):
            if match.start() > pos:
                segments.append((text[pos:match.start()], None))
            segments.append((match.group(), self.ids[match.group()]))
            pos = match.end()
        if pos < len(text):
            segments.append((text[pos:], None))
        return segments


class AddedTokens:
    """`segments(text)`: normalized text pieces and added tokens, in order."""

    def __init__(self, entries: list[dict[str, Any]], normalize: Callable[[str], str]) -> None:
        raw: dict[str, int] = {}
        normalized: dict[str, int] = {}
        for entry in entries:
            for flag in ("single_word", "lstrip", "rstrip"):
                if entry.get(flag):
                    raise ValueError(f"unsupported added token {entry['content']!r}: {flag} is set")
            if entry.get("normalized", not entry.get("special", False)):
                normalized.setdefault(normalize(entry["content"]), entry["id"])
            else:
                raw.setdefault(entry["content"], entry["id"])
        raw.pop("", None)
        normalized.pop("", None)
        self.normalize = normalize
        self._raw = _Matcher(raw) if raw else None
        self._normalized = _Matcher(normalized) if normalized else None

    def segments(self, text: str) -> list[Segment]:
        pieces = self._raw.split(text) if self._raw else [(text, None)]
        segments: list[Segment] = []
        for piece, token_id in pieces:
            if token_id is not None:
                segments.append((piece, token_id))
            elif self._normalized is None:
                segments.append((self.normalize(piece), None))
            else:
                segments.extend(self._normalized.split(self.normalize(piece)))
        return segments
