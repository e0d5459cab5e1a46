"""The tables of the sync database, `data/sync.sqlite3` or the shared PostgreSQL database: the
update store's and the accounts' together, one list of migrations, because both open the store
"sync" and its migrations are numbered per store.

Version 1 is the schema SQLite files already have (`IF NOT EXISTS`: they open unchanged).
On PostgreSQL `user` is a reserved word, so the column is always written quoted; room names
compare byte for byte (`COLLATE "C"`, as SQLite's BINARY) so that a user's range of rooms
(`alice/` up to `alice0`) holds exactly their rooms whatever the database's locale.
"""

from __future__ import annotations

from ..storage import Migration

__all__ = ["MIGRATIONS", "STORE"]

STORE = "sync"

MIGRATIONS = [
    Migration(
        1,
        sqlite="""
CREATE TABLE IF NOT EXISTS sync_updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_updates_by_room ON sync_updates (room, id);
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
CREATE INDEX IF NOT EXISTS sync_users_by_lower_name ON sync_users (lower(name));
CREATE INDEX IF NOT EXISTS sync_tokens_by_user ON sync_tokens (user);
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS sync_updates (
    id BIGSERIAL PRIMARY KEY,
    room TEXT COLLATE "C" NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_updates_by_room ON sync_updates (room, id);
CREATE TABLE IF NOT EXISTS sync_users (
    name TEXT PRIMARY KEY,
    salt BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    params TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_tokens (
    sha256 BYTEA PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES sync_users (name),
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_users_by_lower_name ON sync_users (lower(name));
CREATE INDEX IF NOT EXISTS sync_tokens_by_user ON sync_tokens ("user");
""",
    ),
]
