"""`waystation run --server URL --user NAME`: ctx.state on CPython synced with an account's
documents on a Waystation server, the same documents a browser signed in as that user syncs.

    sync = StateSync(states, "http://127.0.0.1:8000", "ada", password="...")   # or token="..."
    sync.start()       # signs in, sends what earlier offline runs left unsent; documents opened
                       # from now on are brought up to date before anyone reads them
    ... the call ...
    sync.finish()      # every document opened is sent, and acknowledged, before the process ends

Each document is synced over the y-websocket protocol at `/api/sync/ws/USER/DOC` (the room the
page's `web/device_state.js` joins), one short exchange per document: the server opens with its
sync step 1; this side answers with the step 2 the server lacks and a step 1 of its own, and the
server's step 2 to that is the acknowledgement: the server sends it only once everything it took
before is on disk (`docs/server.md`), and it carries what this side lacked. A remote update
applied here is stored in the local SQLite file like any other, so the local copy stays whole.

Offline (the server cannot be reached, or stalls past the timeout), the call runs on the local
copy, a line on stderr says so, and nothing more is tried in this process; what it wrote stays
in SQLite and is sent by the next run with `--server`. Which rows are still unsent is kept per
document (`sync_sent`): the rows the server has acknowledged are those up to `upto`, so a run
sends a document again only if it has rows after that.

A data folder holds one account's documents: its first synced run moves the folder's documents
into that account (as the page's first sign-in does); another account on the same folder is an
error, never a merge of two people's state.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from pycrdt import Decoder, write_var_uint

from ..errors import StateError, WaystationError
from .state_native import NativeStateBackend, NativeStateDoc

__all__ = ["StateSync", "SyncError"]

_SYNC, _AUTH = 0, 2  # y-protocols message types
_STEP1, _STEP2, _UPDATE = 0, 1, 2  # sync steps
_EMPTY_UPDATE = b"\x00\x00"
_UNAUTHORIZED = 4401
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    server TEXT NOT NULL,
    user TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_sent (
    doc TEXT PRIMARY KEY,
    upto INTEGER NOT NULL
);
"""


class SyncError(WaystationError):
    """The server refused this account or one of its documents; `code` says how (docs/errors.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Offline(Exception):
    """The server cannot be reached, or stalled past the timeout."""


class StateSync:
    """Syncs the documents of one data folder's `NativeStateBackend` with one account on a server."""

    def __init__(self, states: NativeStateBackend, server: str, user: str, *, token: str | None = None,
                 password: str | None = None, timeout: float = 10.0, say: Callable[[str], None] = print) -> None:
        if states.path is None:
            raise ValueError("state sync needs a data folder: the documents' unsent rows are kept there")
        if token is None and password is None:
            raise ValueError("state sync needs a token or a password")
        # Here, not in the middle of a call: without the client (the server extra) the command
        # ends with one line naming the extra (waystation/extras.py), not as the workflow's error.
        import websockets.sync.client  # noqa: F401
        self.states, self.timeout, self.say = states, timeout, say
        self.server, self.user, self.token, self._password = server.rstrip("/"), user, token, password
        self.offline = False
        self.opened: list[str] = []  # documents opened in this process, in order
        states.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(states.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def start(self) -> None:
        """Sign in, claim the folder for the account, send what earlier runs left unsent, and
        sync each document as it is opened from now on."""
        if self.token is None:
            try:
                self._login()
            except _Offline as exc:
                self._went_offline(str(exc))
        self._claim()
        self.states.on_open = self._opened
        for name in self._unsent():
            self.states.doc(name)  # opening it syncs it

    def finish(self) -> None:
        """Send every document opened in this process and wait for the server's acknowledgement."""
        self.states.on_open = None
        for name in self.opened:
            if self.offline:
                break
            self._sync(name, self.states.doc(name))
        self.close()

    def close(self) -> None:
        """Stop syncing; what was not sent stays marked unsent for the next run."""
        self.states.on_open = None
        self._db.close()

    def _login(self) -> None:
        """POST /api/sync/login: the token, and the user name as the server spells it."""
        body = json.dumps({"user": self.user, "password": self._password}).encode()
        request = urllib.request.Request(self.server + "/api/sync/login", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = _json_object(response.read())
        except urllib.error.HTTPError as exc:
            reason = _json_object(exc.read()).get("error") or exc.reason
            code = {401: "account-error", 429: "rate-limited", 503: "server-busy"}.get(exc.code, "server-error")
            raise SyncError(code, f"{self.server}: cannot sign in as {self.user!r}: {exc.code} {reason}") from None
        except OSError as exc:  # unreachable, reset, timed out
            raise _Offline(f"cannot sign in: {getattr(exc, 'reason', None) or exc}") from None
        if not isinstance(answer.get("user"), str) or not isinstance(answer.get("token"), str):
            raise SyncError("server-error", f"{self.server}/api/sync/login: the answer has no user and token: "
                                            "is this a Waystation server?")
        self.user, self.token = answer["user"], answer["token"]

    def _opened(self, name: str, doc: NativeStateDoc) -> None:
        self.opened.append(name)
        if not self.offline:
            self._sync(name, doc)

    def _sync(self, name: str, doc: NativeStateDoc) -> None:
        try:
            _exchange(self._room_url(name), doc, self.timeout)
        except _Offline as exc:
            self._went_offline(str(exc))
            return
        # Each row the copy holds now, the server has: it was sent, or it came from the server.
        self._sent(name, self.states.rows_held(name))

    def _room_url(self, name: str) -> str:
        scheme, _, rest = self.server.partition("://")
        ws = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        room = urllib.parse.quote(f"{self.user}/{name}", safe="/")
        return f"{ws}://{rest}/api/sync/ws/{room}?token={urllib.parse.quote(self.token or '', safe='')}"

    def _went_offline(self, reason: str) -> None:
        self.offline = True
        self.say(f"waystation run: offline ({self.server}: {reason}): ctx.state uses the copy in "
                 f"{self.states.path}; its changes are sent by the next run with --server")

    def _claim(self) -> None:
        """The folder is this account's, or becomes it; another account's is an error."""
        row = self._db.execute("SELECT server, user FROM sync_account WHERE id = 1").fetchone()
        if row is None:
            self._db.execute("INSERT INTO sync_account (id, server, user) VALUES (1, ?, ?)", (self.server, self.user))
        elif (row[0], row[1].casefold()) != (self.server, self.user.casefold()):
            raise SyncError("account-error", f"{self.states.path} holds the ctx.state documents of {row[1]!r} on {row[0]}: "
                                             f"use another --data folder for {self.user!r} on {self.server}")

    def _unsent(self) -> list[str]:
        """Documents with rows the server has not acknowledged."""
        query = """SELECT DISTINCT u.doc FROM updates AS u LEFT JOIN sync_sent AS s ON s.doc = u.doc
                   WHERE u.id > COALESCE(s.upto, 0) ORDER BY u.doc"""
        try:
            return [row[0] for row in self._db.execute(query)]
        except sqlite3.OperationalError:  # no updates table yet: nothing stored
            return []

    def _sent(self, name: str, rows: frozenset[int]) -> None:
        """Move `upto` over the rows the acknowledged copy held, stopping at the first one it did not
        (another process's, sent by that process or the next run)."""
        found = self._db.execute("SELECT upto FROM sync_sent WHERE doc = ?", (name,)).fetchone()
        upto = found[0] if found else 0
        for (row,) in self._db.execute("SELECT id FROM updates WHERE doc = ? AND id > ? ORDER BY id", (name, upto)).fetchall():
            if row not in rows:
                break
            upto = row
        self._db.execute("INSERT INTO sync_sent (doc, upto) VALUES (?, ?) "
                         "ON CONFLICT (doc) DO UPDATE SET upto = excluded.upto", (name, upto))


def _exchange(url: str, doc: NativeStateDoc, timeout: float) -> None:
    """One sync of `doc` with its room: both sides end with what either had, and what this
    side sent is acknowledged (on the server's disk) when this returns. `_Offline` if the
    server cannot be reached or stalls; SyncError or StateError if it refuses."""
    from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
    from websockets.sync.client import connect

    deadline = time.monotonic() + timeout
    try:
        with connect(url, open_timeout=timeout, close_timeout=1, max_size=None) as ws:
            refusal, probed = "", False
            while True:
                try:
                    data = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                except ConnectionClosed as exc:
                    code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (1006, "")
                    raise _refused(code, refusal or reason, url) from None
                kind, step, payload = _decode(data) if isinstance(data, bytes) else (-1, -1, b"")
                if kind == _AUTH:  # permission denied: the close that follows has the code
                    refusal = payload.decode(errors="replace")
                elif kind == _SYNC and step == _STEP1 and not probed:
                    missing = doc.encode_state(payload)
                    if missing != _EMPTY_UPDATE:
                        ws.send(_message(_STEP2, missing))
                    ws.send(_message(_STEP1, doc.state_vector()))  # its answer is the acknowledgement
                    probed = True
                elif kind == _SYNC and step in (_STEP2, _UPDATE):
                    if payload != _EMPTY_UPDATE:
                        doc.apply_update(payload)
                    if step == _STEP2 and probed:
                        return
    except InvalidURI as exc:
        raise SyncError("invalid-argument", f"--server: {exc}") from None
    except (OSError, WebSocketException) as exc:  # unreachable, reset, timed out, an HTTP error for the handshake
        raise _Offline(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None


def _refused(code: int, reason: str, url: str) -> Exception:
    room = urllib.parse.unquote(urllib.parse.urlsplit(url).path.removeprefix("/api/sync/ws/"))
    if code == _UNAUTHORIZED:
        return SyncError("unauthorized", f"the server refused the token for {room} ({code} {reason}): sign in again")
    if 4000 <= code < 5000 or code in (1003, 1009):
        return StateError(f"the server refused to sync {room}: {code} {reason}")
    return _Offline(f"the connection for {room} closed: {code} {reason}".rstrip())


def _decode(data: bytes) -> tuple[int, int, bytes]:
    """(message type, sync step or auth kind, payload) of a sync or auth message; others: (type, -1, b"")."""
    decoder = Decoder(data)
    kind = decoder.read_var_uint()
    if kind not in (_SYNC, _AUTH):
        return kind, -1, b""
    return kind, decoder.read_var_uint(), decoder.read_message() or b""


def _message(step: int, payload: bytes) -> bytes:
    return bytes([_SYNC, step]) + write_var_uint(len(payload)) + payload


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
