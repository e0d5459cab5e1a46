"""Regenerate `waystation/device/tokenizers/_unicode.py` by probing the Rust `tokenizers` library.

    .venv/bin/python tests/unit/gen_tokenizer_tables.py   # needs CPython 3.11 (Unicode 14.0)

Every code point goes through the library's own BertNormalizer, NFD, Lowercase and
BertPreTokenizer one at a time (about 10 s), so the tables hold what the Rust crates do,
not what some version of `unicodedata` says. The checks in test_tokenizers.py then compare
the two implementations over the whole code space.
"""

from __future__ import annotations

import sys
import textwrap
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from tokenizers import normalizers, pre_tokenizers

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "py_src/waystation/device/tokenizers/_unicode.py"
CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]

HEADER = '''"""Unicode tables of the Rust `tokenizers` library, from tests/unit/gen_tokenizer_tables.py.

Why not `unicodedata` alone: BertNormalizer and BertPreTokenizer take categories from the
`unicode_categories` crate (old Unicode, no table of unassigned code points, so those are
kept, not removed), decompose with `unicode-normalization-alignments` (Unicode 9) and lowercase
with Rust's std (Unicode 17), while CPython 3.11 ships Unicode 14 and 3.14 ships Unicode 16.
Ranges are inclusive, in hex. Do not edit by hand.
"""

__all__ = ["NONSPACING_MARKS", "PUNCTUATION", "REMOVED", "UNSTABLE", "UNSTABLE_LOWER", "WHITESPACE"]

# Removed by clean_text: NUL, U+FFFD and the crate's Cc/Cf/Co/Cs, except tab, LF and CR.
# (Lone surrogates cannot reach Rust at all; here they go the way of the crate's Cs.)
REMOVED = """
{removed}
"""

# Rust's `char::is_whitespace`.
WHITESPACE = """
{whitespace}
"""

# ASCII punctuation or the crate's P* categories.
PUNCTUATION = """
{punctuation}
"""

# The crate's Mn category, among code points that NFD leaves alone.
NONSPACING_MARKS = """
{marks}
"""

# Where Python's NFD or lower() may differ from the crates': every code point unassigned
# in Unicode 14.0 (so whatever a later Python adds too), plus marks the Unicode 9 NFD misses.
UNSTABLE = """
{unstable}
"""

# Rust's lowercase of the UNSTABLE code points that have one, as "from:to" pairs.
UNSTABLE_LOWER = """
{lower}
"""
'''


def ranges(cps: Iterable[int]) -> str:
    spans: list[list[int]] = []
    for cp in sorted(set(cps)):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    words = [f"{a:04X}" if a == b else f"{a:04X}-{b:04X}" for a, b in spans]
    return "\n".join(textwrap.wrap(" ".join(words), 96))


def bert(clean: bool = False, strip: bool = False) -> normalizers.BertNormalizer:
    return normalizers.BertNormalizer(
        clean_text=clean, handle_chinese_chars=False, strip_accents=strip, lowercase=False)


def classes() -> dict[str, list[int]]:
    clean, strip = bert(clean=True), bert(strip=True)
    nfd, pre = normalizers.NFD(), pre_tokenizers.BertPreTokenizer()
    out: dict[str, list[int]] = {"removed": [], "whitespace": [], "punctuation": [], "marks": []}
    for cp in CODE_POINTS:
        c = chr(cp)
        if clean.normalize_str(c) == "":
            out["removed"].append(cp)
        words = [w for w, _ in pre.pre_tokenize_str(f"a{c}a")]
        if words == ["a", "a"]:
            out["whitespace"].append(cp)
        elif words == ["a", c, "a"]:
            out["punctuation"].append(cp)
        if nfd.normalize_str(c) == c and strip.normalize_str(c) == "":
            out["marks"].append(cp)
    return out


def nfd_probes(c: str) -> list[str]:
    """Strings whose NFD shows whether `c` decomposes and where its combining class sorts it."""
    return [c, f"a{c}\u0334", f"a\u0301{c}", f"a\u0345{c}", f"a{c}\u0301", f"a\u0334{c}\u0301"]


def unstable() -> list[int]:
    nfd = normalizers.NFD()
    out = [cp for cp in CODE_POINTS if unicodedata.category(chr(cp)) == "Cn"]
    for cp in CODE_POINTS:
        c = chr(cp)
        if unicodedata.category(c) == "Cn":
            continue
        if unicodedata.normalize("NFD", c) == c and not unicodedata.combining(c):
            continue
        probes = nfd_probes(c)
        if [nfd.normalize_str(p) for p in probes] != [unicodedata.normalize("NFD", p) for p in probes]:
            # Unknown to the Rust tables: no decomposition, class 0, so a barrier for reordering.
            assert [nfd.normalize_str(p) for p in probes] == probes_as_barrier(probes, c), hex(cp)
            out.append(cp)
    return out


def probes_as_barrier(probes: list[str], c: str) -> list[str]:
    return [c.join(unicodedata.normalize("NFD", part) for part in p.split(c)) for p in probes]


def lower_pairs(unstable_cps: list[int]) -> str:
    lower, pairs = normalizers.Lowercase(), []
    unstable_set = set(unstable_cps)
    for cp in CODE_POINTS:
        c = chr(cp)
        rust = lower.normalize_str(c)
        if cp in unstable_set:
            if rust != c:
                assert len(rust) == 1, hex(cp)
                pairs.append(f"{cp:04X}:{ord(rust):04X}")
        else:
            assert rust == c.lower(), hex(cp)
    return "\n".join(textwrap.wrap(" ".join(pairs), 96))


def main() -> None:
    assert unicodedata.unidata_version == "14.0.0", "run this on CPython 3.11"
    found = classes()
    unstable_cps = unstable()
    surrogates = list(range(0xD800, 0xE000))
    text = HEADER.format(
        removed=ranges(found["removed"] + surrogates), whitespace=ranges(found["whitespace"]),
        punctuation=ranges(found["punctuation"]), marks=ranges(found["marks"]),
        unstable=ranges(unstable_cps), lower=lower_pairs(unstable_cps))
    TARGET.write_text(text)
    print(f"wrote {TARGET}", file=sys.stderr)


if __name__ == "__main__":
    main()
