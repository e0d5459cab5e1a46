"""Event hooks: workflow functions that check, enrich or drop events as they are added.

    from waystation.device import event_hook

    @event_hook("clicks")
    def check_click(ctx, event: dict) -> dict | None:
        if event["item_id"].startswith("test-"):
            return None                       # dropped: not stored, not relayed
        return {**event, "source": "list"}    # stored as returned (then checked against the schema)

Raising refuses the whole batch (nothing of it is stored). bundle.toml may name the hook
(`hook = "check_click"` under `[events.clicks]`); the function must then carry the mark.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from ..errors import WorkflowError
from .schema import EventTable

__all__ = ["HOOK_ATTR", "event_hook", "find_hooks"]

HOOK_ATTR = "__waystation_event_hook__"


def event_hook(table: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a workflow function as the hook of event table `table`: hook(ctx, event) -> event | None."""
    if not isinstance(table, str):
        raise WorkflowError("@event_hook needs the event table's name: @event_hook(\"clicks\")")

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, HOOK_ATTR, table)
        return fn

    return mark


def find_hooks(module: types.ModuleType, tables: dict[str, EventTable]) -> dict[str, Callable[..., Any]]:
    """{table: hook} of a loaded workflow module, checked against the declared tables."""
    hooks: dict[str, Callable[..., Any]] = {}
    for obj in vars(module).values():
        table = getattr(obj, HOOK_ATTR, None) if callable(obj) else None
        if table is None:
            continue
        if table not in tables:
            raise WorkflowError(
                f"@event_hook({table!r}) on {obj.__name__}: the bundle declares no event table {table!r}; "
                f"it declares {sorted(tables)}"
            )
        if table in hooks:
            raise WorkflowError(f"event table {table!r} has two hooks: {hooks[table].__name__} and {obj.__name__}")
        hooks[table] = obj
    for name, table in tables.items():
        if table.hook is None:
            continue
        fn = getattr(module, table.hook, None)
        if fn is None or not callable(fn):
            raise WorkflowError(f"[events.{name}] hook {table.hook!r} is not a function of the workflow script")
        if getattr(fn, HOOK_ATTR, None) != name:
            raise WorkflowError(f"[events.{name}] hook {table.hook!r} must be decorated with @event_hook({name!r})")
    return hooks
