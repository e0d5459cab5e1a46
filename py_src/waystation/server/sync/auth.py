"""Accounts for sync: users with scrypt-hashed passwords, and the tokens they log in with.

    store "sync" (data/sync.sqlite3, or the PostgreSQL database)
        tables sync_users (name, salt, hash, params), sync_tokens (sha256, user, expires)

A token is 32 random bytes, handed out once; only its SHA-256 is stored, so the database
does not hold anything that would let its reader sync as someone else. A token lives
`token_hours`; it can be renewed (a new one, the old one cut to a minute's grace), revoked
(logout), revoked with all its user's others (logout_all), and a password change revokes
every token of the user but the new one it hands out.

User names are case-insensitive: NFKC, then casefolded, is the name an account is stored
and found under ("Ada", "ADA" and "ａｄａ" are "ada"). Rows stored before that rule with
capitals are found by their lower-case form and keep their stored spelling, which is also
their documents' room names: renaming them would orphan those documents and the copies on
their devices. Where two such rows differ only by case, the older one keeps the name.

Every check reads the database, so with several server instances on one PostgreSQL database a
token renewed, revoked or logged out everywhere on one instance is so on all of them at once.

    accounts = Accounts(Path("data"))
    issued = accounts.register("Alice", "correct horse")
    issued.user                               # "alice"
    accounts.session_for(issued.token).user   # "alice"
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS

from ..storage import Connection, IntegrityError, Storage
from .errors import AccountError
from .schema import MIGRATIONS, STORE

__all__ = ["Accounts", "Issued", "Session", "USER_NAME", "canonical_user", "check_password", "token_digest"]

USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # after NFKC and casefolding
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
RENEWAL_GRACE_SECONDS = 60.0  # a renewed token still works this long: other tabs catch up
_COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])  # zxcvbn's 30,000 most common, lower case
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MiB and tens of ms per hash (OWASP's minimum)
_WRONG = "wrong user name or password"


@dataclass(frozen=True)
class Issued:
    """A token just handed out: the only moment its clear text exists on the server."""

    user: str
    token: str
    digest: bytes
    issued_at: float
    expires_at: float

    def json(self) -> dict[str, object]:
        return {"user": self.user, "token": self.token, "issued_at": self.issued_at, "expires_at": self.expires_at}

    def session(self) -> Session:
        return Session(self.user, self.digest, self.expires_at)


@dataclass(frozen=True)
class Session:
    """What a valid token stands for."""

    user: str
    digest: bytes
    expires_at: float


class Accounts:
    """Users and tokens of the data folder `data` (or of a Storage). Blocking: call from a thread pool."""

    def __init__(self, data: str | Path | Storage, *, token_hours: float = 168.0) -> None:
        self.storage = Storage.at(data)
        self.token_seconds = token_hours * 3600
        # synchronous FULL: what SQLite's default gave these tables before, an account or a
        # token survives a power cut once handed out
        self.db = self.storage.database(STORE, MIGRATIONS, synchronous="FULL", timeout=5.0)

    def register(self, user: str, password: str) -> Issued:
        """Create `user` (any case; stored canonical); returns a token for them."""
        user = canonical_user(user)
        check_password(user, password)
        if self._exists(user):  # before the costly hash; the insert checks again
            raise AccountError(409, f"user {user!r} exists already")
        salt = os.urandom(16)
        hashed = _hash(password, salt, _SCRYPT)
        try:  # with another instance registering the same name, the primary key decides
            with self.db.transaction(immediate=True) as db:
                if self._exists(user, db):
                    raise IntegrityError(f"user {user!r} exists")
                db.execute("INSERT INTO sync_users (name, salt, hash, params, created_at) VALUES (?, ?, ?, ?, ?)",
                           (user, salt, hashed, _params(), time.time()))
        except IntegrityError:
            raise AccountError(409, f"user {user!r} exists already") from None
        return self._issue(user)

    def login(self, user: str, password: str) -> Issued:
        """A new token for `user` if `password` is theirs."""
        return self._issue(self._verify(canonical_user(user, for_login=True), password))

    def session_for(self, token: str) -> Session | None:
        """What a valid, unexpired token stands for, or None."""
        digest = token_digest(token)
        with self.db.transaction() as db:
            row = db.execute('SELECT "user", expires_at FROM sync_tokens WHERE sha256 = ? AND expires_at > ?',
                             (digest, time.time())).fetchone()
        return None if row is None else Session(str(row[0]), digest, float(row[1]))

    def user_for(self, token: str) -> str | None:
        """The user a valid, unexpired token belongs to, or None."""
        session = self.session_for(token)
        return None if session is None else session.user

    def renew(self, token: str) -> tuple[Session, Issued]:
        """A new token for the holder of `token`, which then works for a minute's grace only."""
        old = self._require(token)
        grace = time.time() + RENEWAL_GRACE_SECONDS
        with self.db.transaction() as db:
            db.execute("UPDATE sync_tokens SET expires_at = ? WHERE sha256 = ? AND expires_at > ?",
                       (grace, old.digest, grace))
        return old, self._issue(old.user)

    def logout(self, token: str) -> Session:
        """Revoke `token`."""
        session = self._require(token)
        with self.db.transaction() as db:
            db.execute("DELETE FROM sync_tokens WHERE sha256 = ?", (session.digest,))
        return session

    def logout_all(self, token: str) -> tuple[Session, int]:
        """Revoke every token of `token`'s user; returns how many there were."""
        session = self._require(token)
        with self.db.transaction() as db:
            count = db.execute('DELETE FROM sync_tokens WHERE "user" = ?', (session.user,)).rowcount
        return session, count

    def change_password(self, token: str, old: str, new: str) -> tuple[Session, Issued]:
        """Set a new password if `old` is right; every token of the user is revoked but the new one returned."""
        session = self._require(token)
        self._verify(session.user, old, exact=True)
        check_password(session.user.casefold(), new)
        salt = os.urandom(16)
        hashed = _hash(new, salt, _SCRYPT)
        with self.db.transaction() as db:
            db.execute("UPDATE sync_users SET salt = ?, hash = ?, params = ? WHERE name = ?",
                       (salt, hashed, _params(), session.user))
            db.execute('DELETE FROM sync_tokens WHERE "user" = ?', (session.user,))
        return session, self._issue(session.user)

    def _verify(self, user: str, password: str, *, exact: bool = False) -> str:
        """The stored name of `user` if `password` is theirs; AccountError 401 otherwise.

        `user` is a canonical name, found as stored or as the oldest legacy spelling of it;
        `exact`: a stored name, as a token's session holds it.
        """
        row = None
        if len(password) <= MAX_PASSWORD:
            with self.db.transaction() as db:
                if exact:
                    row = db.execute("SELECT name, salt, hash, params FROM sync_users WHERE name = ?", (user,)).fetchone()
                else:
                    row = db.execute("SELECT name, salt, hash, params FROM sync_users WHERE lower(name) = ? "
                                     "ORDER BY name = ? DESC, created_at LIMIT 1", (user, user)).fetchone()
        if row is None:
            _hash(password[:MAX_PASSWORD], b"\0" * 16, _SCRYPT)  # as slow as a real check: names do not leak by timing
            raise AccountError(401, _WRONG)
        name, salt, expected, params = row
        if not hmac.compare_digest(_hash(password, salt, _parse_params(params)), expected):
            raise AccountError(401, _WRONG)
        return str(name)

    def _exists(self, user: str, db: Connection | None = None) -> bool:
        if db is None:
            with self.db.transaction() as db:
                return self._exists(user, db)
        return db.execute("SELECT 1 FROM sync_users WHERE lower(name) = ?", (user,)).fetchone() is not None

    def _require(self, token: str) -> Session:
        session = self.session_for(token)
        if session is None:
            raise AccountError(401, "the token is missing, unknown, revoked or expired: log in again")
        return session

    def _issue(self, user: str) -> Issued:
        token = secrets.token_urlsafe(32)
        now = time.time()
        issued = Issued(user, token, token_digest(token), now, now + self.token_seconds)
        with self.db.transaction() as db:
            db.execute("DELETE FROM sync_tokens WHERE expires_at <= ?", (now,))
            db.execute('INSERT INTO sync_tokens (sha256, "user", expires_at) VALUES (?, ?, ?)',
                       (issued.digest, user, issued.expires_at))
        return issued


def canonical_user(name: str, *, for_login: bool = False) -> str:
    """`name` as accounts are stored: NFKC, casefolded; AccountError 400 (401 when logging in) if not a user name."""
    canonical = unicodedata.normalize("NFKC", name).casefold()
    if not USER_NAME.fullmatch(canonical):
        if for_login:
            raise AccountError(401, _WRONG)  # no such user can exist
        raise AccountError(400, "user must be 1-64 letters a-z (any case), digits, '.', '_' or '-', starting "
                                "with a letter or digit")
    return canonical


def check_password(user: str, password: str) -> None:
    """The minimum policy: 8 to 1024 characters, not the user's name, not one of the commonest passwords."""
    advice = "a few unrelated words make a good one"
    if len(password) < MIN_PASSWORD:
        raise AccountError(400, f"password is too short: use at least {MIN_PASSWORD} characters ({advice})")
    if len(password) > MAX_PASSWORD:
        raise AccountError(400, f"password is too long: use at most {MAX_PASSWORD} characters")
    folded = unicodedata.normalize("NFKC", password).casefold()
    if folded == user:
        raise AccountError(400, f"password must not be the user name: choose something else ({advice})")
    if folded in _COMMON_PASSWORDS:
        raise AccountError(400, f"password is one of the {len(_COMMON_PASSWORDS):,} most common passwords, which "
                                f"are guessed first: choose another ({advice})")


def token_digest(token: str) -> bytes:
    """What the database stores of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _hash(password: str, salt: bytes, params: dict[str, int]) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 << 20, **params)


def _params() -> str:
    return ",".join(f"{k}={v}" for k, v in _SCRYPT.items())


def _parse_params(text: str) -> dict[str, int]:
    return {key: int(value) for key, value in (item.split("=") for item in text.split(","))}
