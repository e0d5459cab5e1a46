"""Publish the picks demo's `items` feature table: each recipe with its MiniLM embedding,
computed on CPython by the minilm bundle's own workflow (`embed`), at publish time.

    .venv/bin/python models/picks/publish_items.py --data data     # `make run` does this

Publishing again with nothing changed makes no new version (the server keeps only changed rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TABLE = "items"
KEY = "item_id"


def items_with_embeddings() -> list[dict[str, Any]]:
    from waystation.cli import run_function

    items = json.loads((HERE / "items.json").read_text())
    reply = asyncio.run(run_function(HERE.parent / "minilm", "embed", {"texts": [item["title"] for item in items]}))
    vectors = reply["result"]["embeddings"]
    return [{**item, "embedding": vector} for item, vector in zip(items, vectors, strict=True)]


def publish(data: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from waystation.server.features_store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"{TABLE}.jsonl"
        file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return FeatureStore(data).publish(TABLE, file, KEY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the server's --data folder")
    args = parser.parse_args()
    print(json.dumps(publish(args.data, items_with_embeddings())))


if __name__ == "__main__":
    main()
