"""A service URL fit for logs, health answers and error messages: its password hidden.

    redacted("postgresql://app:secret@db/w")   # "postgresql://app:***@db/w"
"""

from __future__ import annotations

__all__ = ["redacted"]


def redacted(url: str) -> str:
    """`url` with the password of its user info, if any, as `***`; the rest exactly as given."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
