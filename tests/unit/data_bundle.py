"""A small bundle with event and feature tables, built from a real bundle.toml (no models)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from waystation.bundles.builder import build_bundle
from waystation.bundles.signing import dev_key

_names = itertools.count()

BUNDLE_TOML = """
name = "{name}"
version = "{version}"
workflow = "workflow.py"

[events.clicks]
fields = {{ item_id = "str", dwell_ms = "int?", secret = "str?", score = "float?", liked = "bool?", emb = "vector[4]?" }}
retention = {{ days = 7, rows = {rows} }}
relay = ["item_id", "dwell_ms"]
hook = "check_click"

[events.views]
fields = {{ item_id = "str" }}

[features.items]
key = "item_id"
max_age = "1h"
"""

WORKFLOW = '''
from waystation.device import event_hook, export


@event_hook("clicks")
def check_click(ctx, event):
    if event.get("item_id") == "drop-me":
        return None                                   # dropped
    if event.get("item_id") == "refuse-me":
        raise ValueError("refused on purpose")
    if event.get("dwell_ms") is None:
        event["dwell_ms"] = 0                         # enriched
    return event


@export
async def click(ctx, item_id: str) -> list:
    return await ctx.events("clicks").add({"item_id": item_id})


@export
async def recent(ctx, minutes: float) -> list:
    return ctx.events("clicks").since(minutes=minutes).select("item_id").sort("ts").columns()["item_id"]


@export
async def titles(ctx) -> list:
    q = ctx.events("clicks").join(ctx.features("items"), on="item_id").select("title")
    return sorted(q.columns()["title"])
'''


def unique_name(prefix: str = "data") -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


def build_data_bundle(root: Path, name: str | None = None, version: str = "1.0.0", *, rows: int = 100000) -> Path:
    """Build the bundle into root/build and return its folder (signed with the dev key)."""
    name = name or unique_name()
    source = root / f"src-{name}-{version}"
    source.mkdir(parents=True)
    (source / "bundle.toml").write_text(BUNDLE_TOML.format(name=name, version=version, rows=rows))
    (source / "workflow.py").write_text(WORKFLOW)
    return build_bundle(source, root / "build", progress=lambda _m: None, key=dev_key(), chunk_store=root / "build" / "chunks")
