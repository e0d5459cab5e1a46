"""The sync server's settings, with defaults, overridable from the environment.

    WAYSTATION_SYNC_MAX_MESSAGE_BYTES   largest message a client may send (default 1 MiB)
    WAYSTATION_SYNC_FLUSH_SECONDS       write-behind interval of the store (default 0.5)
    WAYSTATION_SYNC_COMPACT_AFTER       rows of history that trigger compaction (default 500)
    WAYSTATION_SYNC_OUTBOX_BYTES        bytes queued for a slow client before it is dropped (64 MiB)
    WAYSTATION_SYNC_TOKEN_DAYS          lifetime of a login token (default 30)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["SyncConfig"]

_ENV = {
    "max_message_bytes": "WAYSTATION_SYNC_MAX_MESSAGE_BYTES",
    "flush_seconds": "WAYSTATION_SYNC_FLUSH_SECONDS",
    "compact_after": "WAYSTATION_SYNC_COMPACT_AFTER",
    "outbox_bytes": "WAYSTATION_SYNC_OUTBOX_BYTES",
    "token_days": "WAYSTATION_SYNC_TOKEN_DAYS",
}


@dataclass(frozen=True)
class SyncConfig:
    max_message_bytes: int = 1 << 20
    flush_seconds: float = 0.5
    compact_after: int = 500  # y-indexeddb compacts its store after 500 updates too
    outbox_bytes: int = 64 << 20
    token_days: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SyncConfig:
        """The defaults, with each setting whose variable is set in `environ` replaced."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(_ENV[field.name])
            if raw is not None:
                kind = int if field.type in ("int", int) else float
                try:
                    values[field.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{_ENV[field.name]}={raw!r} is not a number") from None
        return cls(**values)
