"""`ctx.log`: a workflow's log lines, in one format and at one default level on every host.

    ctx.log.info("%d rows", len(features))   # -> [digits classify_features] INFO 12 rows

`ctx.log` is a standard `logging.Logger` (`waystation.workflow.BUNDLE`). Its lines go to
stderr on CPython and, in the page, to the worker's console by level (console.debug, info,
warn, error), formatted alike. The level is INFO unless set: `waystation run --log-level
debug`, `open({logLevel: "debug"})` in the page, or `set_log_level` here. The lines do not
propagate to the root logger, so an application's own logging setup neither hides nor
doubles them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ._env import IN_PYODIDE

__all__ = ["LEVELS", "calling", "set_log_level", "workflow_logger"]

LEVELS = ("debug", "info", "warning", "error")
_ROOT = "waystation.workflow"
_FORMAT = "[%(bundle)s %(function)s] %(levelname)s %(message)s"
# The exported function running now, for the line's prefix (a context variable: calls may interleave in asyncio).
_function: contextvars.ContextVar[str] = contextvars.ContextVar("waystation_workflow_function", default="-")


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time of the line (a test or a CLI may have replaced it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


class _Prefix(logging.Filter):
    """Adds the bundle (from the logger's name) and the function running now to each line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.bundle = record.name[len(_ROOT) + 1:] or "-"
        record.function = _function.get()
        return True


def _root() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        if IN_PYODIDE:
            from .hosts.log_browser import ConsoleHandler

            handler: logging.Handler = ConsoleHandler()
        else:
            handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(_Prefix())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return root


def workflow_logger(bundle: str) -> logging.Logger:
    """The logger a bundle's functions get as `ctx.log`."""
    _root()
    return logging.getLogger(f"{_ROOT}.{bundle}")


def set_log_level(level: str) -> None:
    """Set the level of every workflow's log: one of debug, info, warning, error."""
    if not isinstance(level, str) or level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    _root().setLevel(level.upper())


@contextmanager
def calling(function: str) -> Iterator[None]:
    """Lines logged inside this block name `function`."""
    token = _function.set(function)
    try:
        yield
    finally:
        _function.reset(token)
