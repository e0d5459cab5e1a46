"""Where the server keeps its state: SQLite files in a folder (the default, nothing to set up) or
one PostgreSQL database shared by many server instances. Every store (registry, accounts, sync,
events, features, telemetry, logs, admin tokens) goes through this one interface.

    storage = Storage.at("data")                                  # data/registry.sqlite3, ...
    storage = Storage.at("data", "postgresql://app@db/waystation")  # or $WAYSTATION_DATABASE
    db = storage.database("registry", MIGRATIONS)                 # migrated on first use
    with db.transaction() as tx:
        row = tx.execute("SELECT manifest FROM versions WHERE bundle = ?", (name,)).fetchone()

SQL is written once, with `?` placeholders, in what both engines understand: `ON CONFLICT ... DO
NOTHING / DO UPDATE` (never `INSERT OR ...`), `RETURNING` (never `lastrowid`), `length()` of a
blob. Where they differ (column types, identity columns) a migration gives each engine its DDL.

Schema changes are numbered migrations per store, recorded in `schema_migrations`, applied at
start under a lock (SQLite's write lock, a PostgreSQL advisory lock), so instances starting
together apply each once; `waystation db migrate` applies them ahead of a deploy.

Every call blocks: stores run them on threads, never on the event loop. A PostgreSQL outage
raises `Unavailable` (the API answers 503) and the pool reconnects by itself when it is back.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from ._urls import redacted

__all__ = [
    "Connection",
    "Cursor",
    "DATABASE_ENV",
    "Database",
    "Engine",
    "IntegrityError",
    "Migration",
    "Storage",
    "StorageError",
    "Unavailable",
    "close_all",
]

DATABASE_ENV = "WAYSTATION_DATABASE"
Engine = Literal["sqlite", "postgresql"]


class StorageError(Exception):
    """A database could not do what was asked."""


class IntegrityError(StorageError):
    """A write broke a constraint (a primary key or unique value already there, a check)."""


class Unavailable(StorageError):
    """The database cannot be reached now (PostgreSQL down or restarting, every connection busy)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


@dataclass(frozen=True)
class Migration:
    """Schema version `version` of a store: `sql` for both engines, or `sqlite` and `postgresql`
    each; `python(tx)` runs after it (a change SQL alone cannot make, such as adding a column
    only where an old file lacks it)."""

    version: int
    sql: str = ""
    sqlite: str | None = None
    postgresql: str | None = None
    python: Callable[[Connection], None] | None = None

    def sql_for(self, engine: Engine) -> str:
        own = self.sqlite if engine == "sqlite" else self.postgresql
        return own if own is not None else self.sql


class Connection:
    """One transaction's connection, the same for both engines: `execute`, `executemany`."""

    def __init__(self, raw: Any, engine: Engine) -> None:
        self.raw, self.engine = raw, engine

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        try:
            if self.engine == "sqlite":
                return self.raw.execute(sql, params)  # type: ignore[no-any-return]
            return self.raw.execute(_postgres_sql(sql), params or None)  # type: ignore[no-any-return]
        except Exception as exc:
            raise _translated(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """Run `sql` once per row; the cursor's rowcount is the total of rows changed."""
        try:
            if self.engine == "sqlite":
                return self.raw.executemany(sql, rows)  # type: ignore[no-any-return]
            cursor = self.raw.cursor()
            cursor.executemany(_postgres_sql(sql), list(rows))
            return cursor  # type: ignore[no-any-return]
        except Exception as exc:
            raise _translated(exc) from exc

    def script(self, sql: str) -> None:
        """Run several `;`-separated statements without parameters (DDL)."""
        for statement in _statements(sql):
            self.execute(statement)


class Database:
    """One store's database: SQLite (`SqliteDatabase`) or PostgreSQL (`PostgresDatabase`)."""

    engine: Engine
    name: str

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Connection]:
        """A connection holding one transaction: committed on leaving, rolled back on an error.
        `immediate` takes SQLite's write lock at the start (read-then-write without a busy upgrade)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def ping(self) -> None:
        """Raise `Unavailable` unless the database answers now."""
        with self.transaction() as tx:
            tx.execute("SELECT 1").fetchone()

    def migrate(self, store: str, migrations: Sequence[Migration]) -> int:
        """Apply the migrations of `store` not yet applied, in order, each in its own
        transaction under the engine's lock; the store's schema version after it."""
        wanted = sorted(migrations, key=lambda m: m.version)
        version = 0
        for migration in wanted:
            with self.transaction(immediate=True) as tx:
                self._lock_migrations(tx)
                tx.script(_MIGRATIONS_TABLE)
                applied = {v for (v,) in tx.execute("SELECT version FROM schema_migrations WHERE store = ?", (store,))}
                if migration.version not in applied:
                    tx.script(migration.sql_for(self.engine))
                    if migration.python is not None:
                        migration.python(tx)
                    tx.execute("INSERT INTO schema_migrations (store, version) VALUES (?, ?)", (store, migration.version))
            version = migration.version
        return version

    def version(self, store: str) -> int:
        """The newest migration of `store` applied here (0: none)."""
        with self.transaction() as tx:
            tx.script(_MIGRATIONS_TABLE)
            (found,) = tx.execute("SELECT coalesce(max(version), 0) FROM schema_migrations WHERE store = ?",
                                  (store,)).fetchone()
        return int(found)

    def close(self) -> None:
        """Let go of the connections this store keeps (SQLite's per-thread ones); a PostgreSQL
        pool is the whole process's, closed by `close_all` at exit."""

    def _lock_migrations(self, tx: Connection) -> None:
        """Hold, until `tx` ends, the lock that lets one process at a time migrate."""


_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    store TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (store, version)
)
"""


class SqliteDatabase(Database):
    """A SQLite file in WAL mode. A connection per transaction by default, so the server's
    threads and the command line may all write to one file; `per_thread` keeps one open on each
    thread instead (hot paths that write many times a second)."""

    engine: Engine = "sqlite"

    def __init__(self, path: Path, *, foreign_keys: bool = False, synchronous: str = "NORMAL",
                 per_thread: bool = False, timeout: float = 10.0) -> None:
        self.path, self.name = path, path.stem
        self.foreign_keys, self.synchronous, self.per_thread, self.timeout = foreign_keys, synchronous, per_thread, timeout
        self._local = threading.local()
        self._kept: list[sqlite3.Connection] = []  # the per-thread connections, for close()
        self._kept_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
        finally:
            db.close()

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Connection]:
        db = self._thread_connection() if self.per_thread else self._connect()
        try:
            db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield Connection(db, "sqlite")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from exc
        finally:
            if not self.per_thread:
                db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        if self.foreign_keys:
            db.execute("PRAGMA foreign_keys = ON")
        return db

    def _thread_connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            with self._kept_lock:
                self._kept.append(db)
        return db

    def close(self) -> None:
        """Close the per-thread connections now (checkpointing the WAL), not whenever the garbage
        collector finds them; a thread that transacts again opens a new one."""
        with self._kept_lock:
            kept, self._kept = self._kept, []
        self._local = threading.local()
        for db in kept:
            db.close()


class PostgresDatabase(Database):
    """A PostgreSQL database through a psycopg 3 connection pool, shared by every store of the
    process (each store keeps its own tables)."""

    engine: Engine = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        from psycopg_pool import ConnectionPool

        self.url, self.name, self.timeout = url, "postgresql", timeout
        self.pool = ConnectionPool(url, min_size=1, max_size=max(1, pool_size), timeout=timeout,
                                   kwargs=_CONNECTION_OPTIONS, check=_check_if_idle, reset=_note_return,
                                   name="waystation", open=False)
        self.pool.open(wait=False)

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Connection]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=self.timeout) as raw, raw.transaction():
                yield Connection(raw, "postgresql")
        except PoolTimeout as exc:
            raise Unavailable(f"PostgreSQL did not lend a connection within {self.timeout:g} s "
                              f"(down, restarting, or every connection busy)") from exc
        except psycopg.OperationalError as exc:
            raise Unavailable(f"PostgreSQL: {str(exc).strip() or type(exc).__name__}") from exc

    def _lock_migrations(self, tx: Connection) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def close_pool(self) -> None:
        self.pool.close()


class DedicatedPostgres(Database):
    """A store's hot path on PostgreSQL (the sync store's one worker thread): each thread keeps one
    connection of its own, outside the pool, so a commit costs its statements and nothing more
    (measured: group commits through the pool doubled the sync latency at 1,000 clients); a
    connection that fails is dropped and the next transaction connects again. Migrations and
    pings go through the shared pool."""

    engine: Engine = "postgresql"

    def __init__(self, shared: PostgresDatabase) -> None:
        self.shared, self.url, self.name = shared, shared.url, "postgresql"
        self._local = threading.local()
        self._kept: list[Any] = []
        self._kept_lock = threading.Lock()

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Connection]:
        import psycopg

        raw = getattr(self._local, "raw", None)
        try:
            if raw is None or raw.closed:
                raw = self._local.raw = psycopg.connect(self.url, connect_timeout=max(1, int(self.shared.timeout)),
                                                        **_CONNECTION_OPTIONS)
                with self._kept_lock:
                    self._kept.append(raw)
            with raw.transaction():
                yield Connection(raw, "postgresql")
        except psycopg.OperationalError as exc:
            self._drop(raw)
            raise Unavailable(f"PostgreSQL: {str(exc).strip() or type(exc).__name__}") from exc
        except Unavailable:
            self._drop(raw)
            raise

    def migrate(self, store: str, migrations: Sequence[Migration]) -> int:
        return self.shared.migrate(store, migrations)

    def version(self, store: str) -> int:
        return self.shared.version(store)

    def ping(self) -> None:
        self.shared.ping()

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept = self._kept, []
        self._local = threading.local()
        for raw in kept:
            with suppress(Exception):
                raw.close()

    def _drop(self, raw: Any) -> None:
        if raw is not None:
            with suppress(Exception):
                raw.close()
        self._local.raw = None


# A lock waited for as long as SQLite's busy timeout, then Unavailable (503): a stuck transaction
# elsewhere cannot hold a request's thread for ever.
_LOCK_TIMEOUT_MS = 10_000
_CONNECTION_OPTIONS: dict[str, Any] = {"autocommit": True, "options": f"-c lock_timeout={_LOCK_TIMEOUT_MS}"}
_IDLE_CHECK_SECONDS = 2.0


def _note_return(conn: Any) -> None:
    """Pool `reset`: when the connection came back."""
    conn._waystation_returned = time.monotonic()


def _check_if_idle(conn: Any) -> None:
    """Pool `check`: a connection idle a while is tested before it is lent (after a restart of
    PostgreSQL the pool drops the dead ones instead of failing a request per stale connection);
    one back within `_IDLE_CHECK_SECONDS` is lent as it is, sparing a round trip per transaction
    on the busy path (were it dead, that one request gets 503 and the pool drops it)."""
    from psycopg_pool import ConnectionPool

    if time.monotonic() - getattr(conn, "_waystation_returned", 0.0) > _IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)
_MIGRATION_LOCK = 0x5761_7973  # any constant the other users of the database do not lock


class Storage:
    """The server's state: `database(name)` is SQLite file `data/NAME.sqlite3`, or, with a
    PostgreSQL URL, the one database every store shares."""

    def __init__(self, data: Path, url: str | None = None) -> None:
        self.data, self.url = data, url or None
        self.engine: Engine = "postgresql" if self.url else "sqlite"

    @classmethod
    def at(cls, data: str | Path | Storage, url: str | None = None) -> Storage:
        """The storage of folder `data`, on `url` if given, else on $WAYSTATION_DATABASE if set."""
        if isinstance(data, Storage):
            return data
        url = url or default_url(Path(data)) or None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise StorageError(f"{DATABASE_ENV}/--database {redacted(url)!r} is not a postgresql:// URL "
                               "(leave it unset for SQLite files under --data)")
        return cls(Path(data), url)

    def database(self, name: str, migrations: Sequence[Migration] = (), **sqlite_options: Any) -> Database:
        """Store `name`'s database with `migrations` applied; `sqlite_options` go to SqliteDatabase.
        `dedicated=True` (a store with one worker thread of its own): on PostgreSQL that thread
        keeps a connection outside the pool, on SQLite it is `per_thread`."""
        db: Database
        dedicated = bool(sqlite_options.pop("dedicated", False))
        if self.url is None:
            if dedicated:
                sqlite_options["per_thread"] = True
            db = SqliteDatabase(self.data / f"{name}.sqlite3", **sqlite_options)
        elif dedicated:
            db = DedicatedPostgres(_postgres(self.url))
        else:
            db = _postgres(self.url)
        if migrations:
            db.migrate(name, migrations)
        return db

    def describe(self) -> str:
        """Where the state lives, for logs and health: never the URL's password."""
        return f"postgresql {redacted(self.url)}" if self.url else f"sqlite {self.data}"


def _url_from_environment(data: Path) -> str | None:
    return os.environ.get(DATABASE_ENV)


# Where a data folder's state lives when no URL is given: $WAYSTATION_DATABASE, else its SQLite
# files. The tests' PostgreSQL run replaces it (one database per data folder, as SQLite has).
default_url: Callable[[Path], str | None] = _url_from_environment

_pools: dict[str, PostgresDatabase] = {}
_pools_lock = threading.Lock()


def _postgres(url: str) -> PostgresDatabase:
    """The process's one pool for `url`: every store of a server shares it."""
    with _pools_lock:
        db = _pools.get(url)
        if db is None:
            from .config import ServerConfig

            config = ServerConfig.from_env()
            db = _pools[url] = PostgresDatabase(url, pool_size=config.database_pool_size,
                                                timeout=config.database_timeout)
        return db


def close_all(url: str | None = None) -> None:
    """Close the PostgreSQL pools (of `url`, or all): at shutdown, and between tests."""
    with _pools_lock:
        for key in [key for key in _pools if url is None or key == url]:
            _pools.pop(key).close_pool()


def _translated(exc: BaseException) -> BaseException:
    """The engine's exception as this module's own, when it is one a store handles."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    module = type(exc).__module__
    if module.startswith("psycopg"):
        import psycopg

        if isinstance(exc, psycopg.errors.IntegrityError):
            return IntegrityError(str(exc).strip())
        if isinstance(exc, psycopg.OperationalError):
            return Unavailable(f"PostgreSQL: {str(exc).strip() or type(exc).__name__}")
    return exc


@lru_cache(maxsize=1024)
def _postgres_sql(sql: str) -> str:
    """`sql` with psycopg's placeholders: `?` outside quotes becomes `%s`, and `%` becomes `%%`."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
            out.append("%%" if char == "%" else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


def _statements(script: str) -> list[str]:
    """The statements of a DDL script, split where SQLite says a statement is complete (so a
    trigger's body, with its own `;`, stays whole)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().rstrip(";").strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
