"""The sync server's errors, under Waystation's tree (waystation.device.errors):

    WaystationError
    ├── AccountError     registration or login refused; `.status` is the HTTP status
    │   └── RetryLater   refused for now (429 throttled, 503 busy); `.retry_after` in seconds
    └── ProtocolError    a client sent bytes that are not the y-websocket protocol (closed with 1003)
"""

from __future__ import annotations

from ...device.errors import WaystationError

__all__ = ["AccountError", "ProtocolError", "RetryLater"]


class AccountError(WaystationError):
    """Registration or login refused; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RetryLater(AccountError):
    """Refused for now, not for good: try again in `retry_after` seconds (429 or 503)."""

    def __init__(self, status: int, message: str, retry_after: float) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


class ProtocolError(WaystationError, ValueError):
    """A client sent a message that is not valid y-websocket protocol."""
