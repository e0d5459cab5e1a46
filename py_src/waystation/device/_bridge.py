"""The Python half of the worker protocol (web/worker.js holds the JS half).

Arguments and results cross as JSON text: one parse on each side, no proxies to leak,
and a result that is not JSON-able fails here with a clear error instead of in postMessage.
Tensors in a result travel beside the JSON as raw buffers (one copy into a typed array,
then transferred to the page), not as lists of numbers.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from .runtime import App
from .smoke import smoke_check as run_smoke_check
from .tensor import Tensor

__all__ = ["call", "close", "open_bundle", "smoke_check"]

_app: App | None = None


async def open_bundle(path: str) -> str:
    """Open the bundle at `path`; the one open before is closed only once this one is open."""
    global _app
    opened = await App.open(path, verify=False)  # the worker verified every file with WebCrypto
    previous, _app = _app, opened
    if previous is not None:
        previous.close()
    return json.dumps(_app.describe())


async def smoke_check() -> str:
    """The open bundle's smoke check (waystation.device.smoke), as a reply like `call`'s."""
    if _app is None:
        return _error(RuntimeError("no bundle is open"))
    try:
        return json.dumps({"ok": True, "result": await run_smoke_check(_app)})
    except Exception as exc:
        return _error(exc)


async def call(name: str, args_json: str) -> tuple[str, list[memoryview]]:
    """Returns the reply as JSON text and the buffers of the tensors it refers to."""
    if _app is None:
        return _error(RuntimeError("no bundle is open")), []
    tensors: list[Tensor] = []
    try:
        reply = await _app.call(name, json.loads(args_json), tensors=tensors)
        return json.dumps({"ok": True, **reply}, allow_nan=False), [t.data for t in tensors]
    except Exception as exc:  # every failure reaches the page as a rejected promise
        return _error(exc), []


def close() -> None:
    global _app
    if _app is not None:
        _app.close()
        _app = None


def _error(exc: BaseException) -> str:
    detail: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    detail["traceback"] = "".join(traceback.format_exception(exc, limit=-3))
    return json.dumps({"ok": False, "error": detail})
