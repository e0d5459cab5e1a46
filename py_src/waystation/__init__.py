"""Waystation: offline-first, on-device inference for the web."""

__version__ = "0.1.0"
__all__ = ["__version__"]
