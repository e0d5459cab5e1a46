"""Accounts for sync: users with scrypt-hashed passwords, and the tokens they log in with.

    data/sync.sqlite3   tables sync_users (name, salt, hash, params), sync_tokens (sha256, user, expires)

A token is 32 random bytes, handed out once; only its SHA-256 is stored, so the database
does not hold anything that would let its reader sync as someone else.

    accounts = Accounts(Path("data/sync.sqlite3"))
    token = accounts.register("alice", "correct horse")
    accounts.user_for(token)          # "alice"
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AccountError

__all__ = ["Accounts", "USER_NAME"]

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MiB and tens of ms per hash (OWASP's minimum)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_users (
    name TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    params TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_tokens (
    sha256 BLOB PRIMARY KEY,
    user TEXT NOT NULL REFERENCES sync_users (name),
    expires_at REAL NOT NULL
);
"""


class Accounts:
    """Users and tokens in the SQLite file `path`. Blocking: call from a thread pool."""

    def __init__(self, path: Path, *, token_days: float = 30.0) -> None:
        self.path = path
        self.token_seconds = token_days * 86400
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def register(self, user: str, password: str) -> str:
        """Create `user`; returns a token for them."""
        _check_credentials(user, password)
        salt = os.urandom(16)
        params = ",".join(f"{k}={v}" for k, v in _SCRYPT.items())
        try:
            with self._db() as db:
                db.execute("INSERT INTO sync_users VALUES (?, ?, ?, ?, ?)",
                           (user, salt, _hash(password, salt, _SCRYPT), params, time.time()))
        except sqlite3.IntegrityError:
            raise AccountError(409, f"user {user!r} exists already") from None
        return self._issue(user)

    def login(self, user: str, password: str) -> str:
        """A new token for `user` if `password` is theirs."""
        if len(password) > 1024:
            raise AccountError(401, "wrong user name or password")
        with self._db() as db:
            row = db.execute("SELECT salt, hash, params FROM sync_users WHERE name = ?", (user,)).fetchone()
        if row is None:
            _hash(password, b"\0" * 16, _SCRYPT)  # as slow as a real check: names do not leak by timing
            raise AccountError(401, "wrong user name or password")
        salt, expected, params = row
        if not hmac.compare_digest(_hash(password, salt, _parse_params(params)), expected):
            raise AccountError(401, "wrong user name or password")
        return self._issue(user)

    def user_for(self, token: str) -> str | None:
        """The user a valid, unexpired token belongs to, or None."""
        with self._db() as db:
            row = db.execute("SELECT user FROM sync_tokens WHERE sha256 = ? AND expires_at > ?",
                             (_digest(token), time.time())).fetchone()
        return None if row is None else str(row[0])

    def _issue(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM sync_tokens WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO sync_tokens VALUES (?, ?, ?)", (_digest(token), user, now + self.token_seconds))
        return token

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=5)
        try:
            with db:  # one transaction: commit, or roll back on error
                yield db
        finally:
            db.close()


def _check_credentials(user: str, password: str) -> None:
    if not USER_NAME.fullmatch(user):
        raise AccountError(400, "user must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not 8 <= len(password) <= 1024:
        raise AccountError(400, "password must be 8 to 1024 characters")


def _hash(password: str, salt: bytes, params: dict[str, int]) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 << 20, **params)


def _parse_params(text: str) -> dict[str, int]:
    return {key: int(value) for key, value in (item.split("=") for item in text.split(","))}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
