"""The hosts are chosen here, once: onnxruntime-web and Yjs inside Pyodide, onnxruntime and
pycrdt elsewhere."""

from __future__ import annotations

from functools import cache

from .._env import IN_PYODIDE
from .base import Host, HostSession, TensorInfo
from .state_base import StateBackend, StateDocBackend

__all__ = ["Host", "HostSession", "StateBackend", "StateDocBackend", "TensorInfo", "default_host", "default_state_backend"]


@cache
def default_host() -> Host:
    if IN_PYODIDE:
        from .browser import BrowserHost

        return BrowserHost()
    from .native import NativeHost

    return NativeHost()


@cache
def default_state_backend() -> StateBackend:
    """The runtime's state documents, one registry per process (in the browser: per worker)."""
    if IN_PYODIDE:
        from .state_browser import BrowserStateBackend

        return BrowserStateBackend()
    from .state_native import NativeStateBackend

    return NativeStateBackend()
