"""Regular expressions over the code point ranges of `_unicode`, fast on the common case.

`re` tests a character class as one bitmap for the BMP but walks astral ranges one by one,
so a class with a few hundred astral ranges costs about 1 µs per character of any text.
`CharSet` keeps the two halves apart: a BMP-only class scans the text, and the astral
ranges are only tried, behind a one-range guard, on texts that hold an astral code point.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property

__all__ = ["ASTRAL", "CharSet", "Pattern", "Span", "class_body", "has_astral", "parse", "split_planes"]

Span = tuple[int, int]
Pattern = re.Pattern[str]

ASTRAL = "\\U00010000-\\U0010ffff"
has_astral = re.compile(f"[{ASTRAL}]").search


def parse(table: str) -> list[Span]:
    """'0041-005A 00B5' -> [(0x41, 0x5A), (0xB5, 0xB5)]"""
    spans = []
    for word in table.split():
        first, _, last = word.partition("-")
        spans.append((int(first, 16), int(last or first, 16)))
    return spans


def class_body(spans: Iterable[Span]) -> str:
    """The inside of a `[...]` class matching `spans`."""
    return "".join(
        f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in spans)


def split_planes(spans: Iterable[Span]) -> tuple[list[Span], list[Span]]:
    bmp: list[Span] = []
    astral: list[Span] = []
    for a, b in spans:
        if a <= 0xFFFF:
            bmp.append((a, min(b, 0xFFFF)))
        if b > 0xFFFF:
            astral.append((max(a, 0x10000), b))
    return bmp, astral


def _compile(spans: list[Span], suffix: str = "") -> Pattern | None:
    if not spans:
        return None
    if spans[0][0] > 0xFFFF:  # the cheap test first: most text has no astral code point
        return re.compile(f"(?=[{ASTRAL}])[{class_body(spans)}]{suffix}")
    return re.compile(f"[{class_body(spans)}]{suffix}")


class CharSet:
    """A set of code points that finds, replaces and splits out its members in a text."""

    def __init__(self, spans: Iterable[Span]) -> None:
        self.spans = sorted(spans)

    @cached_property
    def _patterns(self) -> tuple[Pattern | None, Pattern | None, Pattern | None, Pattern | None]:
        """(BMP member, BMP run, astral member, astral run), compiled on first use: the large
        sets take milliseconds, and ASCII text never needs them."""
        bmp, astral = split_planes(self.spans)
        return _compile(bmp), _compile(bmp, "+"), _compile(astral), _compile(astral, "+")

    def search(self, text: str) -> bool:
        bmp, _, astral, _ = self._patterns
        if bmp is not None and bmp.search(text):
            return True
        return astral is not None and has_astral(text) is not None and (
            astral.search(text) is not None)

    def sub(self, repl: str, text: str) -> str:
        """Replace each member by `repl`, a `re` template (`\\g<0>` is the member)."""
        bmp, _, astral, _ = self._patterns
        if bmp is not None:
            text = bmp.sub(repl, text)
        if astral is not None and has_astral(text):
            text = astral.sub(repl, text)
        return text

    def split(self, text: str) -> list[str]:
        """[outside, run of members, outside, ...]: the runs at odd indexes."""
        parts, pos = [], 0
        for start, end in self._member_runs(text):
            parts += [text[pos:start], text[start:end]]
            pos = end
        parts.append(text[pos:])
        return parts

    def _member_runs(self, text: str) -> list[Span]:
        _, bmp_runs, _, astral_runs = self._patterns
        runs = [m.span() for m in bmp_runs.finditer(text)] if bmp_runs else []
        if astral_runs is not None and has_astral(text):
            runs += [m.span() for m in astral_runs.finditer(text)]
            runs.sort()
        return runs
