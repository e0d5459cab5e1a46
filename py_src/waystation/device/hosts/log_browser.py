"""`ctx.log` in the page: lines go to the worker's console, by level, so DevTools filters them as it does the page's own."""

from __future__ import annotations

import logging

__all__ = ["ConsoleHandler"]


class ConsoleHandler(logging.Handler):
    """console.debug / info / warn / error by the line's level."""

    def __init__(self) -> None:
        super().__init__()
        import js  # type: ignore[import-not-found]

        self._console = js.console

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
        except Exception:
            self.handleError(record)
