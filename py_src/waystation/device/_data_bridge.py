"""The Python half of the worker's data messages (web/worker.js and web/data_sync.js hold the JS half).

Like `_bridge`, everything crosses as JSON text and every reply is `{"ok": true, "value": ...}`
or `{"ok": false, "error": {"code", "message", ...}}` (`_bridge._error`'s): a DataError reaches
the page as a rejected promise named "data-error", its message naming the table and field. All
of it works on the bundle `_bridge` opened.
"""

from __future__ import annotations

import json
from typing import Any

from . import _bridge
from .data import DeviceData

__all__ = ["add_events", "apply_features", "describe", "feature_version", "mark_relayed", "relay_batch"]


def _data() -> DeviceData:
    if _bridge._app is None:
        raise RuntimeError("no bundle is open")
    return _bridge._app.data


def _ok(value: Any) -> str:
    return json.dumps({"ok": True, "value": value}, allow_nan=False)


def _fail(exc: BaseException) -> str:
    return _bridge._error(exc)  # one error reply for every worker message: its code, message, Python type


def describe() -> str:
    """What the worker syncs for the open bundle: {"version", "relays": bool, "features": [names]}."""
    try:
        app = _bridge._app
        if app is None:
            raise RuntimeError("no bundle is open")
        declared = app.manifest.declarations
        relays = any(table.relay for table in declared.events.values())
        return _ok({"bundle": app.manifest.name, "version": app.version, "relays": relays, "features": sorted(declared.features)})
    except Exception as exc:
        return _fail(exc)


async def add_events(name: str, events_json: str) -> str:
    """Add a batch (all or nothing) and make it durable; the ids (null for events a hook dropped)."""
    try:
        return _ok(await _data().add_events(name, events_json))
    except Exception as exc:
        return _fail(exc)


def relay_batch(limit: int) -> str:
    try:
        return _ok(_data().relay_batch(int(limit)))
    except Exception as exc:
        return _fail(exc)


async def mark_relayed(upto_json: str) -> str:
    try:
        await _data().mark_relayed(json.loads(upto_json))
        return _ok(None)
    except Exception as exc:
        return _fail(exc)


def feature_version(name: str) -> str:
    try:
        return _ok(_data().feature_version(name))
    except Exception as exc:
        return _fail(exc)


async def apply_features(delta_json: str) -> str:
    """Apply a delta from GET /api/features/NAME; {"version", "changed", "deleted", "full"}."""
    try:
        return _ok(await _data().apply_features(delta_json))
    except Exception as exc:
        return _fail(exc)
