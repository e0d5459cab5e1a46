"""The browser host: onnxruntime-web, reached through Pyodide's JS interop.

The worker (web/worker.js) registers `makeOrtHost(ort)` from web/ort_host.js as the JS
module `_waystation_ort` before it imports Waystation; this is the only Python module that
touches it. Every tensor crosses the boundary with exactly one copy: `to_js` builds the typed
array ORT reads, and `to_memoryview()` copies ORT's output back into Python memory.

A model run awaits ORT's promise as a `JsPromise`: under the worker's call the worker itself
awaits it and resumes Python, without a trip through the event loop (see `_eager`).
"""

from __future__ import annotations

from typing import Any

from .._eager import JsPromise, JsPromiseError
from ..errors import ModelError
from ..tensor import Tensor
from .base import TensorInfo

__all__ = ["BrowserHost"]


def _js() -> tuple[Any, Any, Any, Any]:
    import _waystation_ort  # type: ignore[import-not-found]
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]

    return js, _waystation_ort, to_js, JsException


def _info(meta: Any) -> TensorInfo:
    # onnxruntime-web 1.30 reports a dynamic axis as 2**32 - 1 (-1 read as uint32).
    shape = tuple(_dim(d) for d in meta.shape.to_py())
    return TensorInfo(meta.name, str(meta.type) if meta.isTensor else "unknown", shape)


def _dim(d: Any) -> int | str:
    if isinstance(d, int):
        return d if 0 <= d < 2**31 else "?"
    return str(d) or "?"


class BrowserSession:
    def __init__(self, session: Any, label: str) -> None:
        self._session = session
        self._label = label
        self.inputs = [_info(m) for m in session.inputMetadata]
        self.outputs = [_info(m) for m in session.outputMetadata]
        _, self._ort, self._to_js, self._JsException = _js()

    async def run(self, feeds: dict[str, Tensor], output_names: list[str]) -> dict[str, Tensor]:
        # One to_js for every feed (one copy of each buffer), one await: see web/ort_host.js.
        rows = self._to_js([[name, t.dtype, t.data, t.shape] for name, t in feeds.items()])
        try:
            results = await JsPromise(self._ort.run(self._session, rows, self._to_js(output_names)))
        except JsPromiseError as exc:
            raise ModelError(f"model {self._label!r} failed to run: {exc}") from None
        except self._JsException as exc:
            raise ModelError(f"model {self._label!r} failed to run: {exc.message}") from None
        out: dict[str, Tensor] = {}
        for name, dtype, dims, data in results:
            out[name] = Tensor(dtype, data.to_memoryview(), dims.to_py())
        return out

    def close(self) -> None:
        if self._session is not None:
            self._session.release()
            self._session = None


class BrowserHost:
    name = "browser"

    async def preloaded_model(self, path: str, *, label: str) -> BrowserSession | None:
        """The session the worker started from the model's verified bytes, or None."""
        _, ort, _, JsException = _js()
        pending = ort.takeSession(path)
        if not pending:  # JS null
            return None
        try:
            session = await pending
        except JsException as exc:
            raise ModelError(f"model {label!r} failed to load: {exc.message}") from None
        return BrowserSession(session, label)

    async def load_model(self, model: bytes | memoryview, *, label: str) -> BrowserSession:
        js, ort, to_js, JsException = _js()
        options = to_js(
            {"executionProviders": ["wasm"], "graphOptimizationLevel": "all"},
            dict_converter=js.Object.fromEntries,
        )
        try:
            session = await ort.createSession(to_js(memoryview(model).cast("B")), options)
        except JsException as exc:
            raise ModelError(f"model {label!r} failed to load: {exc.message}") from None
        return BrowserSession(session, label)
