"""The host is chosen here, once: onnxruntime-web inside Pyodide, onnxruntime elsewhere."""

from __future__ import annotations

from functools import cache

from .._env import IN_PYODIDE
from .base import Host, HostSession, TensorInfo

__all__ = ["Host", "HostSession", "TensorInfo", "default_host"]


@cache
def default_host() -> Host:
    if IN_PYODIDE:
        from .browser import BrowserHost

        return BrowserHost()
    from .native import NativeHost

    return NativeHost()
