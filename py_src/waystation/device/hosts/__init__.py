"""The hosts are chosen here, once: onnxruntime-web and Yjs inside Pyodide, onnxruntime and
pycrdt elsewhere."""

from __future__ import annotations

from functools import cache

from .._env import IN_PYODIDE
from .base import Host, HostSession, TensorInfo
from .data_base import DataBackend
from .state_base import StateBackend, StateDocBackend

__all__ = [
    "DataBackend",
    "Host",
    "HostSession",
    "StateBackend",
    "StateDocBackend",
    "TensorInfo",
    "default_data_backend",
    "default_host",
    "default_state_backend",
]


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


@cache
def default_data_backend() -> DataBackend:
    """The runtime's events and feature tables: one SQLite database per process (in the browser: per account)."""
    if IN_PYODIDE:
        from .data_browser import BrowserDataBackend  # type: ignore[import-not-found,unused-ignore]

        return BrowserDataBackend()  # type: ignore[no-any-return,unused-ignore]
    from .data_native import NativeDataBackend, default_data_dir

    return NativeDataBackend(default_data_dir())
