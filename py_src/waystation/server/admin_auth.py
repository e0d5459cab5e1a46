"""Admin tokens: who may use /api/admin/* (the fleet dashboard and its controls).

    tokens = AdminTokens(Path("data"))      # data/admin.sqlite3, or the server's PostgreSQL database
    token = tokens.make()                   # shown once; only its sha256 is stored
    tokens.check(token)                     # "ok", "none" (no token exists) or "wrong"
    tokens.revoke_all()                     # every token stops working

No token exists until an operator makes one with `waystation admin token`, so a fresh server
answers every admin request 401: nobody on the network holds a way in by default. A token is
32 random bytes (URL-safe base64); the database holds only its SHA-256, so a copy of the data
folder lets no one in. Hashes are compared with hmac.compare_digest, against every stored one,
so the time an answer takes says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .storage import Migration, Storage

__all__ = ["ADMIN_FILE", "AdminTokens", "TokenCheck"]

ADMIN_FILE = "admin.sqlite3"
MIGRATIONS = (
    Migration(1, """
CREATE TABLE IF NOT EXISTS admin_tokens (
    sha256 TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
"""),
)
TokenCheck = Literal["ok", "none", "wrong"]


class AdminTokens:
    """The admin tokens of one data folder (or of the PostgreSQL database the server's instances
    share). Blocking: call from a thread pool on the server."""

    def __init__(self, data: str | Path | Storage) -> None:
        self.storage = Storage.at(data)
        self.path = self.storage.data / ADMIN_FILE  # the SQLite file (unused on PostgreSQL)
        self.db = self.storage.database("admin", MIGRATIONS, synchronous="FULL")

    def make(self) -> str:
        """A new random token; only its hash is kept, so this is the one time it can be read."""
        token = secrets.token_urlsafe(32)
        with self.db.transaction() as db:
            db.execute("INSERT INTO admin_tokens (sha256, created_at) VALUES (?, ?)",
                       (_digest(token), datetime.now(UTC).isoformat(timespec="seconds")))
        return token

    def check(self, token: str) -> TokenCheck:
        """Whether `token` is one of the stored ones ("ok"), none exists ("none"), or it is not ("wrong")."""
        hashes = self.hashes()
        if not hashes:
            return "none"
        digest = _digest(token)
        matched = False
        for known in hashes:  # all of them, always: no early exit to time
            matched |= hmac.compare_digest(digest, known)
        return "ok" if matched else "wrong"

    def hashes(self) -> list[str]:
        with self.db.transaction() as db:
            return [row[0] for row in db.execute("SELECT sha256 FROM admin_tokens")]

    def created(self) -> list[str]:
        """When each token in force was made (ISO times, oldest first)."""
        with self.db.transaction() as db:
            return [row[0] for row in db.execute("SELECT created_at FROM admin_tokens ORDER BY created_at")]

    def revoke_all(self) -> int:
        """Drop every token; how many there were."""
        with self.db.transaction() as db:
            return db.execute("DELETE FROM admin_tokens").rowcount


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
