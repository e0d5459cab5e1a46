"""Texts that test_tokenizers.py feeds to both tokenizers: hand-picked cases and seeded noise."""

from __future__ import annotations

import random
import unicodedata

LONG_WORD = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3  # 135 chars: past the 100 limit
WORDS = [
    "offline", "first", "inference", "runs", "in", "the", "browser", "while", "the", "service", "worker",
    "keeps", "model", "bundles", "fresh,", "and", "state", "syncs", "when", "the", "network", "returns",
]


def _long_text(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + rng.choice(["", "", ",", ".", "!"]) for _ in range(words))


CORPUS: dict[str, list[str]] = {
    "english": [
        "Hello world", "hello world!", "The quick brown fox jumps over the lazy dog.",
        "Offline-first apps keep working without a network.", "I can't believe it's not butter",
        "don't won't shouldn't y'all o'clock", "Mr. Smith went to Washington D.C. in 1999.",
        "unaffable unbelievably antidisestablishmentarianism", "a", "I", "x y z",
        "Tokenization is the first step of most NLP pipelines.",
    ],
    "case": [
        "HELLO WORLD", "HeLLo WoRLD", "iPhone eBay McDonald's", "CamelCaseIdentifier",
        "SCREAMING_SNAKE_CASE", "ΑΘΗΝΑ ΟΔΟΣ Σ ΣΣ", "ǅ ǈ ǋ ǲ titlecase digraphs", "ẞ großes Eszett",
    ],
    "accents": [
        "café naïve résumé façade coöperate", "Crème brûlée à la mode", "Ångström Øresund Æsir",
        unicodedata.normalize("NFC", "Pokémon São Paulo Zürich"),
        unicodedata.normalize("NFD", "Pokémon São Paulo Zürich"),
        "e\u0301 e\u0301\u0301 a\u0308\u0304 o\u0328\u0301", "ḍ̇ q̣̇ ṩ", "Ĳsselmeer ĳ ŉ ſ",
        "Việt Nam Tiếng Việt có dấu", "Dvořák Škoda Łódź Gdańsk",
    ],
    "german_turkish": [
        "Straße Fußball Maß groß", "STRASSE", "ß ẞ ss", "İstanbul İzmir", "ıi İI Iı", "DİYARBAKIR",
        "KIRMIZI ışık", "i̇ (i + combining dot)",
    ],
    "greek_cyrillic": [
        "Καλημέρα κόσμε", "ΟΔΥΣΣΕΥΣ ὈΔΥΣΣΕΎΣ", "ᾼ ᾳ ῼ ΐ ΰ", "Привет, мир!", "Ёлка ёжик Йошкар-Ола",
        "Україна Ґанок їжак", "Српски језик ђ ћ џ", "Здравствуйте, как дела?",
    ],
    "rtl_indic": [
        "مرحبا بالعالم", "الْعَرَبِيَّة", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया", "हिन्दी भाषा क़ ड़",
        "বাংলা ভাষা", "தமிழ் மொழி", "ภาษาไทย สวัสดี", "ქართული ენა", "Հայերեն լեզու", "ᠮᠣᠩᠭᠣᠯ",
    ],
    "cjk": [
        "你好，世界！", "中文分词测试", "東京は日本の首都です。", "ひらがな カタカナ ｶﾀｶﾅ",
        "한국어 텍스트 안녕하세요", "각 조합형", "漢字かな交じり文", "𠀀𠀁 𪜀 𫝀 𫠠 𬺰 丽",
        "ＡＢＣ　ｆｕｌｌｗｉｄｔｈ！", "「引用」『二重』【括弧】〜", "㍿ ㋿ ㈱ ㊙",
    ],
    "emoji": [
        "I love it 😀😃😄", "👍🏽 👩‍💻 👨‍👩‍👧‍👦", "🇫🇷 🇯🇵 🏴󠁧󠁢󠁳󠁣󠁴󠁿", "❤️ ❤ ☺️ ✌🏿",
        "🫠 🫨 🪿 🩷 newer emoji", "keycap 1️⃣ #️⃣", "🧑🏻‍🤝‍🧑🏿 handshake",
    ],
    "punctuation": [
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "¡¿«»‹›„“”‘’—–…‰′″", "•·‧∙※‼⁇⁈⁉",
        "、。〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛", "¶§©®™°±×÷", "…and then—silence.", "a-b_c.d/e\\f",
        "((nested [brackets] {braces}))", "⸘ ⸮ ⹂ ⹏ ⹐ ⹓ ⹝", "\U00011144 \U0001E95E \U00016FE2",
    ],
    "math": [
        "∑ ∫ ∂ ∇ √ ∞ ≈ ≠ ≤ ≥", "E = mc²", "x₁ + x₂ = ½", "𝐀𝐁𝐂 𝕏 𝔸 𝒜", "∀x∈ℝ: x² ≥ 0",
        "1/2 ¾ ⅔ ⅞", "f(x) = 3x^2 + 2x - 1",
    ],
    "control": [
        "a\x00b", "bell\x07here", "tab\there", "line\nbreak", "windows\r\nline", "zero\u200bwidth",
        "\ufeffbom at start", "soft\u00adhyphen", "bidi \u202ehidden\u202c text", "\x1c\x1d\x1e\x1f sep",
        "\x0b\x0c\x85 vertical", "nb\u00a0sp\u2009thin\u3000ideo", "\ufffdreplacement\ufffd",
        "join\u200dzwj\u200cnon", "\u2028line\u2029para", "\ue000private\U000f0000use",
        "\U000e0041\U000e0042 tags", "\x7f\x80\x9f c1", "\u0890\u0891\u08e2 newer formats",
    ],
    "marks_alone": [
        "\u0301", "\u0301\u0300 leading marks", " \u0308 ", "\u0334\u0301a", "a\u0301\u0334",
        "\u093f\u0941", "\u20dd\u20e3 enclosing", "\u0898\u0899 unknown marks", "a\U0001e4ec\u0301",
        "\U0001D165\U0001D16D\U0001D172", "\u302e\u302f", "\u0f71\u0f72\u0f80",
    ],
    "long_words": [
        LONG_WORD, "x" * 100, "x" * 101, "é" * 101, "a" * 99 + "\u0301", "ab" * 60 + " short",
        "supercalifragilisticexpialidocious", "llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    ],
    "long_texts": [_long_text(300, 1), _long_text(3000, 2), _long_text(6000, 3), "word " * 255,
                   "word " * 254, "你" * 400],
    "empty_like": ["", " ", "   ", "\t\n\r ", "\u3000\u2003", "\x00\x07", "\u200b\ufeff"],
    "numbers": ["0", "42", "3.14159", "1,000,000", "1e-10", "+33 6 12 34 56 78", "٣٤٥ ۴۵۶ ४५६",
                "2026-11-22T10:00:00Z", "$1,234.56 €99 ¥500 ₹1,00,000"],
    "urls_code": [
        "https://example.com/path?query=1&b=2#frag", "user@example.org", "www.waystation.dev",
        "def f(x): return x ** 2  # square", "if (a && b || !c) { return; }", "SELECT * FROM t;",
        "<div class=\"x\">hi</div>", "{\"key\": [1, 2, null]}", "C:\\Users\\me\\file.txt",
        "git commit -m 'fix: thing'", "x86_64-linux-gnu", "@mention #hashtag $TICKER",
    ],
    "special_tokens": [
        "[CLS]", "[SEP] [PAD] [MASK] [UNK]", "hello[MASK]world", "[cls] lower case", "[[CLS]]",
        "[CLS][SEP]", "[ CLS ]", "[MASK", "a[SEP]b[SEP]c", "Ｃ[SEP]é",
    ],
}


# Code point ranges the random texts draw from, with weights.
RANGES: list[tuple[int, int, int]] = [
    (0x20, 0x7E, 30), (0x00, 0x1F, 2), (0x7F, 0xFF, 6), (0x100, 0x24F, 4), (0x250, 0x2FF, 2),
    (0x300, 0x36F, 4), (0x370, 0x3FF, 3), (0x400, 0x52F, 3), (0x590, 0x5FF, 2), (0x600, 0x6FF, 3),
    (0x700, 0x8FF, 2), (0x900, 0xDFF, 4), (0xE00, 0xFFF, 2), (0x1000, 0x1FFF, 3),
    (0x2000, 0x206F, 4), (0x2070, 0x2BFF, 4), (0x2C00, 0x2FFF, 2), (0x3000, 0x30FF, 4),
    (0x3100, 0x4DBF, 2), (0x4E00, 0x9FFF, 4), (0xA000, 0xABFF, 2), (0xAC00, 0xD7FF, 3),
    (0xE000, 0xF8FF, 1), (0xF900, 0xFFFF, 3), (0x10000, 0x1AFFF, 3), (0x1B000, 0x1CFFF, 1),
    (0x1D000, 0x1DFFF, 2), (0x1E000, 0x1EFFF, 2), (0x1F000, 0x1FAFF, 5), (0x1FB00, 0x1FFFF, 1),
    (0x20000, 0x2FFFF, 2), (0x30000, 0x3FFFF, 1), (0xE0000, 0xE01EF, 1), (0xF0000, 0x10FFFF, 1),
]
SEPARATORS = [" ", " ", " ", "", "\t", "\n", "\u3000", "\u00a0"]


def random_texts(count: int, seed: int = 20261122) -> list[str]:
    """`count` seeded random texts of up to ~40 code points from all over Unicode."""
    rng = random.Random(seed)
    weights = [w for _, _, w in RANGES]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 6)):
            start, end, _w = rng.choices(RANGES, weights)[0]
            chars = (chr(rng.randint(start, end)) for _ in range(rng.randint(1, 8)))
            parts.append("".join(c for c in chars if not 0xD800 <= ord(c) <= 0xDFFF))
        texts.append("".join(p + rng.choice(SEPARATORS) for p in parts))
    return texts
