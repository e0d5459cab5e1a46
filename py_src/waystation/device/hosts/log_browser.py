"""`ctx.log` in the page: lines go to the worker's console, by level, so DevTools filters them as it does the page's own.

While remote logging is on (docs/telemetry.md) the worker's `_waystation_log` module also gets
each line (level, logger, message) to upload; while it is off it is asked nothing more than that.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["ConsoleHandler"]


class ConsoleHandler(logging.Handler):
    """console.debug / info / warn / error by the line's level."""

    def __init__(self) -> None:
        super().__init__()
        import js  # type: ignore[import-not-found]

        self._console = js.console
        self._remote: Any = None  # the worker's _waystation_log, once a line finds it registered

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if record.levelno >= logging.ERROR:
                self._console.error(line)
            elif record.levelno >= logging.WARNING:
                self._console.warn(line)
            elif record.levelno >= logging.INFO:
                self._console.info(line)
            else:
                self._console.debug(line)
            remote = self._remote or self._find_remote()
            if remote is not None and remote.wanted():
                remote.line(record.levelname.lower(), record.name, record.getMessage())
        except Exception:
            self.handleError(record)

    def _find_remote(self) -> Any:
        try:
            import _waystation_log  # type: ignore[import-not-found]
        except ImportError:  # a host without it (the Node tests): the console alone
            return None
        self._remote = _waystation_log
        return self._remote
