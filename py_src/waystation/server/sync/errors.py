"""The sync server's errors, under Waystation's tree (waystation.device.errors):

    WaystationError
    ├── AccountError     registration or login refused; `.status` is the HTTP status
    └── ProtocolError    a client sent bytes that are not the y-websocket protocol (closed with 1003)
"""

from __future__ import annotations

from ...device.errors import WaystationError

__all__ = ["AccountError", "ProtocolError"]


class AccountError(WaystationError):
    """Registration or login refused; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(WaystationError, ValueError):
    """A client sent a message that is not valid y-websocket protocol."""
