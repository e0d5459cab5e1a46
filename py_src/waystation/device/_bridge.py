"""The Python half of the worker protocol (web/worker.js holds the JS half).

Arguments and results cross as JSON text: one parse on each side, no proxies to leak,
and a result that is not JSON-able fails here with a clear error instead of in postMessage.
Tensors travel beside the JSON as raw buffers, both ways: a typed array from the page is a
`{"$tensor": i, "dtype": ..., "shape": [...]}` placeholder in the arguments and becomes a
`Tensor` over one copy of its bytes, never a list of Python numbers; a Tensor in a result is
copied once into a typed array that the worker transfers to the page.

`call` runs the workflow under the worker's own drive (see `_eager`): it returns the reply at
once, or a `Pending` whose promise the worker awaits before resuming it, so a model call costs
no trip through the event loop. A reply without tensors is the JSON text alone (a JS string,
no proxy to destroy).
"""

from __future__ import annotations

import json
from typing import Any

from ._eager import run_eagerly
from .arguments import load_arguments, result_json
from .errors import error_detail
from .runtime import App
from .smoke import smoke_check as run_smoke_check
from .tensor import Tensor

__all__ = ["call", "close", "open_bundle", "smoke_check"]

_app: App | None = None


async def open_bundle(path: str) -> str:
    """Open the bundle at `path`; the one open before is closed only once this one is open."""
    global _app
    try:
        opened = await App.open(path, verify=False)  # the worker verified every file with WebCrypto
    except Exception as exc:  # the page gets its code and one-line message (an import failure says where)
        return _error(exc)
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


def call(name: str, args_json: str, buffers: Any = None) -> Any:
    """The reply (JSON text, or (JSON text, tensor buffers)), a `Pending` of it, or a future of it.

    `buffers` holds the typed arrays the arguments' tensor placeholders refer to.
    """
    return run_eagerly(_call(name, args_json, buffers))


async def _call(name: str, args_json: str, buffers: Any) -> str | tuple[str, list[memoryview]]:
    if _app is None:
        return _error(RuntimeError("no bundle is open"))
    tensors: list[Tensor] = []
    try:
        args = _with_tensors(load_arguments(name, args_json), buffers)  # NaN, Infinity: refused as on CPython
        reply = result_json(name, {"ok": True, **(await _app.call(name, args, tensors=tensors))})
    except Exception as exc:  # every failure reaches the page as a rejected promise
        return _error(exc)
    return (reply, [t.data for t in tensors]) if tensors else reply


def _with_tensors(args: Any, buffers: Any) -> Any:
    """Arguments with each top-level tensor placeholder replaced by a Tensor over its buffer."""
    if not buffers:
        return args
    views = [b.to_memoryview() for b in buffers]  # one copy each, into Python memory

    def revive(value: Any) -> Any:
        if isinstance(value, dict) and "$tensor" in value:
            return Tensor(value["dtype"], views[value["$tensor"]], value["shape"])
        return value

    if isinstance(args, dict):
        return {k: revive(v) for k, v in args.items()}
    return [revive(v) for v in args]


def close() -> None:
    global _app
    if _app is not None:
        _app.close()
        _app = None


def _error(exc: BaseException) -> str:
    """The error reply: its code (errors.error_code, the page's `e.name`), message, Python type and traceback apart."""
    detail: dict[str, Any] = error_detail(exc)
    detail["type"] = detail["code"]  # what the worker read before `code` existed
    return json.dumps({"ok": False, "error": detail})
