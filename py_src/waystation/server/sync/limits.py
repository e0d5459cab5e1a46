"""What a socket may cost the server: close codes for the limits, and the token buckets that pace reading.

Close codes (RFC 6455 7.4.1; 4000-4999 are the application's):

    1003  a message that does not parse (y-websocket speaks binary)
    1009  a message over max_message_bytes, or an awareness state over awareness_state_bytes
    1013  the client reads too slowly: its outbox passed outbox_bytes (try again later)
    4412  updates whose predecessors never came passed the room's bound for such updates
    4413  an update would take the document past max_document_bytes, or a new document
          would pass max_documents_per_user
"""

from __future__ import annotations

import time

__all__ = [
    "DOCUMENT_TOO_LARGE",
    "LimitExceeded",
    "MISSING_PREDECESSORS",
    "Pace",
    "TOO_MANY_DOCUMENTS",
    "TokenBucket",
]

DOCUMENT_TOO_LARGE = "document too large"
TOO_MANY_DOCUMENTS = "too many documents"
MISSING_PREDECESSORS = "too many updates waiting for missing predecessors"


class LimitExceeded(Exception):
    """A client went past a limit: close it with `code` and `reason` (at most 123 bytes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close {code})")
        self.code, self.reason = code, reason


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. `take` spends and says how long to
    wait before going on: the debt, paid at `rate` (so a sender past its burst is paced, not refused)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self, amount: float) -> float:
        if self.rate <= 0:  # 0 turns the limit off
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - amount
        self.at = now
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class Pace:
    """What one user's sync sockets may send together: messages and bytes, each a token bucket.

    Shared by all of a user's sockets, so opening more sockets buys no more of the server: the
    strict reading of an update costs up to ~0.15 s of the event loop per MiB in the worst case,
    and `sockets_per_user` sockets each paced alone would let one user take the whole loop."""

    def __init__(self, messages_per_second: float, bytes_per_second: float, byte_burst: float) -> None:
        self.messages = TokenBucket(messages_per_second, messages_per_second)
        self.volume = TokenBucket(bytes_per_second, byte_burst)

    def take(self, size: int) -> float:
        """Count one message of `size` bytes; the seconds to wait before reading the next."""
        return max(self.messages.take(1), self.volume.take(size))
