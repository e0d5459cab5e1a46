"""The server's settings: every limit it enforces, with its default, in one place.

Each setting can be changed from the environment as `WAYSTATION_<NAME>` (upper case), for
example `WAYSTATION_MAX_DOCUMENT_BYTES=67108864 waystation serve`. `docs/server.md` documents
each one and the refusal a client gets when it is reached; a test checks that the two agree.

    config = ServerConfig.from_env()
    config.max_body_bytes        # 65536
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ServerConfig", "env_name"]


@dataclass(frozen=True)
class ServerConfig:
    # --- HTTP server (a connection, before any route runs) ---
    max_connections: int = 2000  # open TCP connections; past it a new one is closed at once
    header_timeout: float = 10.0  # seconds to receive a request's line and headers
    body_timeout: float = 30.0  # seconds to receive a request's body
    idle_timeout: float = 5.0  # seconds a keep-alive connection may wait for its next request
    max_body_bytes: int = 64 << 10  # largest request body of the JSON APIs (413 past it)
    max_relay_bytes: int = 1 << 20  # one batch of relayed events once decompressed (413 past it)
    ws_ping_seconds: float = 20.0  # WebSocket ping interval; a peer silent for as long again is dropped
    drain_seconds: float = 0.0  # on SIGTERM, seconds /api/health/ready answers 503 before shutting down (0: none)

    # --- accounts ---
    token_hours: float = 168.0  # a login token's lifetime; renewable before it ends
    login_per_minute_per_address: int = 20  # login/register attempts of one address (429 past it)
    login_free_failures: int = 5  # wrong passwords for one account before each try must wait
    login_max_delay: float = 60.0  # the longest wait between tries for one account: never a lockout
    password_hash_workers: int = 1  # threads for scrypt, apart from every other thread pool
    password_hash_queue: int = 32  # hashes waiting for those threads; past it 503 (busy)

    # --- sync (WebSocket documents) ---
    max_message_bytes: int = 1 << 20  # largest message a client may send (close 1009)
    max_document_bytes: int = 16 << 20  # a document's encoded size (close 4413)
    max_documents_per_user: int = 200  # documents one user may hold (close 4413 on a new one)
    sockets_per_user: int = 32  # open sync sockets of one user (close 4429)
    messages_per_second: float = 200.0  # per socket; past the burst, reading it pauses
    bytes_per_second: float = float(1 << 20)  # per socket; past the burst, reading it pauses
    awareness_entries_per_room: int = 256  # awareness client ids one room keeps (more are ignored)
    awareness_state_bytes: int = 8 << 10  # one awareness state (close 1009 past it)
    outbox_bytes: int = 64 << 20  # bytes queued for a slow reader before it is dropped (close 1013)
    compact_after: int = 500  # rows of a document's history that trigger compaction (y-indexeddb: 500)
    fsync_commits: int = 0  # 1: fsync each commit, so acknowledged edits survive a power cut too

    # --- running workflow functions on the server (POST /api/run) ---
    run_workers: int = 2  # calls running at once, each on a thread (twice as many threads: see run_api)
    run_queue: int = 16  # calls waiting for a worker; past it 503 (busy)
    run_per_user: int = 4  # calls of one user running or waiting; past it 429
    run_timeout: float = 30.0  # seconds a call may take, waiting included; past it 504 (timeout)
    run_body_bytes: int = 4 << 20  # largest body of a call (413 past it)
    run_open_apps: int = 4  # bundle versions kept loaded, least recently used closed first

    # --- device telemetry and remote logs (POST /api/telemetry, /api/logs) ---
    telemetry_report_bytes: int = 64 << 10  # one telemetry report's body (413 past it)
    telemetry_reports_per_minute: int = 120  # reports and log uploads from one address (429 past it); 0: no limit
    log_upload_bytes: int = 32 << 10  # one upload of remote log lines (413 past it)
    telemetry_keep_days: float = 90.0  # telemetry older than this is forgotten, report ids included

    # --- storage on PostgreSQL (--database / WAYSTATION_DATABASE; SQLite ignores these) ---
    database_pool_size: int = 10  # connections one instance keeps to PostgreSQL, at most
    database_timeout: float = 5.0  # seconds to wait for a connection before answering 503

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> ServerConfig:
        """The defaults, each replaced by its `WAYSTATION_<NAME>` from `environ` if set, then by `overrides`."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(env_name(field.name))
            if raw is None:
                continue
            kind = int if field.type in ("int", int) else float
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{env_name(field.name)}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None
            if values[field.name] < 0:
                raise ValueError(f"{env_name(field.name)}={raw!r} must not be negative")
        return cls(**{**values, **overrides})


def env_name(setting: str) -> str:
    """The environment variable of a setting: `max_body_bytes` -> `WAYSTATION_MAX_BODY_BYTES`."""
    return f"WAYSTATION_{setting.upper()}"
