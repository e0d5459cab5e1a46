"""Runtime facts, detected once. Only `hosts/browser.py` may touch `js` when IN_PYODIDE."""

import sys

__all__ = ["IN_PYODIDE"]

IN_PYODIDE = sys.platform == "emscripten"
