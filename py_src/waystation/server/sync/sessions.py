"""The open sync sockets, by the token they were opened with and by user.

A token is checked once, when its socket opens; this registry is what makes that check hold
for the socket's whole life. When a token is revoked (logout, logout-all, password change)
or expires, its sockets are closed with 4401, so a stolen token stops working everywhere at
once; a renewed token's sockets move to the new token. It also counts each user's sockets
for `sockets_per_user`.

    sessions = Sessions(sockets_per_user=32)
    if not sessions.admit(session, client): ...     # the user has too many sockets: close 4429
    sessions.revoke(digest)                          # its sockets close with 4401
    sessions.remove(client)                          # when the socket ends

With several instances, a token's sockets may be open on any of them: each revocation and move
made here is also handed to `relay` (sync.fanout publishes it), and the other instances apply it
with `apply_relayed`, so a logout closes the token's sockets everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .auth import Session
from .client import UNAUTHORIZED, Client

__all__ = ["Sessions"]


@dataclass
class _Token:
    user: str
    expires_at: float
    clients: set[Client] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class Sessions:
    """Open sockets by token digest and user. Event-loop only: no locks, no awaits."""

    def __init__(self, *, sockets_per_user: int) -> None:
        self.sockets_per_user = sockets_per_user
        # Bumped on every revocation: a socket whose token check straddled one checks again.
        self.generation = 0
        self._tokens: dict[bytes, _Token] = {}
        self._per_user: dict[str, int] = {}
        self._token_of: dict[Client, bytes] = {}
        self.relay: Callable[[dict[str, Any]], None] | None = None  # to the other instances' Sessions

    def count(self, user: str) -> int:
        return self._per_user.get(user, 0)

    def admit(self, session: Session, client: Client) -> bool:
        """Hold `client` under its token until it expires or is revoked; False if its user has too many sockets."""
        if self.count(session.user) >= self.sockets_per_user:
            return False
        entry = self._tokens.get(session.digest)
        if entry is None:
            entry = self._tokens[session.digest] = _Token(session.user, session.expires_at)
            self._schedule(session.digest, entry)
        entry.clients.add(client)
        self._token_of[client] = session.digest
        self._per_user[session.user] = self.count(session.user) + 1
        return True

    def remove(self, client: Client) -> None:
        digest = self._token_of.pop(client, None)
        entry = self._tokens.get(digest) if digest is not None else None
        if digest is None or entry is None:
            return
        entry.clients.discard(client)
        self._per_user[entry.user] -= 1
        if not self._per_user[entry.user]:
            del self._per_user[entry.user]
        if not entry.clients:
            self._drop(digest)

    def apply_relayed(self, change: dict[str, Any]) -> None:
        """A revocation or move another instance made (`relay`'s message), applied here, not relayed again."""
        relay, self.relay = self.relay, None
        try:
            if "revoke" in change:
                self.revoke(bytes.fromhex(change["revoke"]))
            elif "revoke_user" in change:
                keep = change.get("keep")
                self.revoke_user(str(change["revoke_user"]), keep=bytes.fromhex(keep) if keep else None)
            elif "move" in change:
                self.move(bytes.fromhex(change["move"]),
                          Session(str(change["user"]), bytes.fromhex(change["digest"]), float(change["expires_at"])))
        finally:
            self.relay = relay

    def _relay(self, change: dict[str, Any]) -> None:
        if self.relay is not None:
            self.relay(change)

    def revoke(self, digest: bytes) -> None:
        """Close the sockets opened with this token (4401)."""
        self._relay({"revoke": digest.hex()})
        self.generation += 1
        entry = self._tokens.get(digest)
        for client in list(entry.clients if entry else ()):
            client.close(UNAUTHORIZED)

    def revoke_user(self, user: str, *, keep: bytes | None = None) -> None:
        """Close every socket of `user` (4401), except those opened with the token `keep`."""
        self._relay({"revoke_user": user, "keep": keep.hex() if keep is not None else None})
        self.generation += 1
        for digest, entry in list(self._tokens.items()):
            if entry.user == user and digest != keep:
                for client in list(entry.clients):
                    client.close(UNAUTHORIZED)

    def move(self, old: bytes, new: Session) -> None:
        """A renewed token: the sockets opened with `old` now live as long as `new`."""
        self._relay({"move": old.hex(), "user": new.user, "digest": new.digest.hex(), "expires_at": new.expires_at})
        entry = self._tokens.pop(old, None)
        if entry is None:
            return
        if entry.timer:
            entry.timer.cancel()
        target = self._tokens.get(new.digest)
        if target is None:
            entry.expires_at = new.expires_at
            target = self._tokens[new.digest] = entry
            self._schedule(new.digest, target)
        else:
            target.clients |= entry.clients
        for client in entry.clients:
            self._token_of[client] = new.digest

    def _schedule(self, digest: bytes, entry: _Token) -> None:
        delay = max(0.0, entry.expires_at - time.time())
        entry.timer = asyncio.get_running_loop().call_later(delay, self._expire, digest)

    def _expire(self, digest: bytes) -> None:
        entry = self._tokens.get(digest)
        if entry is None:
            return
        if entry.expires_at > time.time():  # the clock moved under the timer: wait again
            self._schedule(digest, entry)
            return
        entry.timer = None
        for client in list(entry.clients):
            client.close(UNAUTHORIZED)

    def _drop(self, digest: bytes) -> None:
        entry = self._tokens.pop(digest)
        if entry.timer:
            entry.timer.cancel()
