"""waystation.server.storage: one interface over SQLite files and PostgreSQL, run on whichever
engine the test run uses (`--engine postgresql`: the data folder's own database), plus what only
PostgreSQL has (an outage, and the recovery from it) on a cluster of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_service import PostgresCluster, postgres_bin

from waystation.server import storage
from waystation.server.storage import IntegrityError, Migration, Storage, StorageError, Unavailable

ITEMS = Migration(1, "CREATE TABLE IF NOT EXISTS items (k TEXT PRIMARY KEY, v BLOB NOT NULL, n INTEGER)",
                  postgresql="CREATE TABLE IF NOT EXISTS items (k TEXT PRIMARY KEY, v BYTEA NOT NULL, n BIGINT)")
INDEXED = Migration(2, "CREATE INDEX IF NOT EXISTS items_by_n ON items (n)")


def test_one_sql_text_runs_on_both_engines(tmp_path: Path, storage_engine: str) -> None:
    db = Storage.at(tmp_path / "data").database("demo", [ITEMS])
    assert db.engine == storage_engine
    with db.transaction() as tx:
        # executemany's rowcount is the rows changed, on both engines: the duplicate is not
        added = tx.executemany("INSERT INTO items VALUES (?, ?, ?) ON CONFLICT (k) DO NOTHING",
                               [("a", b"\x00x", 1), ("b", b"yy", 2), ("a", b"z", 3)])
        assert added.rowcount == 2
        # a literal % and a ? inside quotes are text, not placeholders
        rows = tx.execute("SELECT k, v, length(v) FROM items WHERE k LIKE 'a%' AND k <> '?' ORDER BY k").fetchall()
        assert [tuple(row) for row in rows] == [("a", b"\x00x", 2)]
        summed = tx.execute("INSERT INTO items VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET n = items.n + excluded.n "
                            "RETURNING n", ("a", b"", 5)).fetchone()
        assert tuple(summed) == (6,)


def test_a_broken_constraint_is_an_integrity_error_and_nothing_of_the_transaction_stays(tmp_path: Path) -> None:
    db = Storage.at(tmp_path / "data").database("demo", [ITEMS])
    with db.transaction() as tx:
        tx.execute("INSERT INTO items VALUES (?, ?, ?)", ("a", b"", 1))
    with pytest.raises(IntegrityError), db.transaction() as tx:
        tx.execute("INSERT INTO items VALUES (?, ?, ?)", ("b", b"", 2))
        tx.execute("INSERT INTO items VALUES (?, ?, ?)", ("a", b"", 3))
    with db.transaction() as tx:
        assert [row[0] for row in tx.execute("SELECT k FROM items ORDER BY k")] == ["a"]  # "b" rolled back with it


def test_migrations_apply_once_in_order_and_say_the_version(tmp_path: Path) -> None:
    data = Storage.at(tmp_path / "data")
    db = data.database("demo")
    assert db.version("demo") == 0
    assert db.migrate("demo", [INDEXED, ITEMS]) == 2  # given in any order, applied 1 then 2
    calls: list[int] = []
    again = Migration(2, python=lambda tx: calls.append(2))  # already applied: never run
    assert db.migrate("demo", [ITEMS, again]) == 2 and calls == []
    assert db.version("demo") == 2 and db.version("other") == 0  # numbered per store


def test_instances_starting_together_apply_each_migration_once(tmp_path: Path) -> None:
    runs: list[str] = []
    lock = threading.Lock()

    def counted(tx: storage.Connection) -> None:
        with lock:
            runs.append(threading.current_thread().name)

    migrations = [ITEMS, Migration(2, python=counted)]
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Storage.at(tmp_path / "data").database("demo", migrations)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, name=f"instance-{i}") for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(runs) == 1


def test_a_url_that_is_not_postgresql_is_refused_with_the_password_hidden(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is not a postgresql:// URL") as refused:
        Storage.at(tmp_path, "mysql://app:hunter2@db/app")
    assert "hunter2" not in str(refused.value)
    assert Storage(tmp_path, "postgresql://app:hunter2@db:5432/w").describe() == "postgresql postgresql://app:***@db:5432/w"


def test_sqlite_close_closes_the_connections_threads_kept(tmp_path: Path) -> None:
    db = Storage(tmp_path).database("demo", [ITEMS], per_thread=True)
    assert isinstance(db, storage.SqliteDatabase)
    with db.transaction() as tx:
        kept = tx.raw
    with db.transaction() as tx:
        assert tx.raw is kept  # one per thread, kept
    db.close()
    with pytest.raises(Exception, match="closed"):
        kept.execute("SELECT 1")
    with db.transaction() as tx:  # and the thread opens another when it needs one
        assert tx.execute("SELECT count(*) FROM items").fetchone()[0] == 0


# --- PostgreSQL's outages: a cluster of this module's own, stopped and started ---


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL's server is not installed (make services)")
    with PostgresCluster() as started:
        yield started


@pytest.mark.parametrize("dedicated", [False, True], ids=["pooled", "dedicated"])
def test_an_outage_is_unavailable_and_the_same_objects_work_again_after_it(cluster: PostgresCluster, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            dedicated: bool) -> None:
    monkeypatch.setenv("WAYSTATION_DATABASE_TIMEOUT", "1")
    url = cluster.new_database()
    try:
        db = Storage(tmp_path, url).database("demo", [ITEMS], dedicated=dedicated)
        assert isinstance(db, storage.DedicatedPostgres if dedicated else storage.PostgresDatabase)
        with db.transaction() as tx:
            tx.execute("INSERT INTO items VALUES (?, ?, ?)", ("before", b"", 1))
        cluster.stop()
        with pytest.raises(Unavailable, match="PostgreSQL"), db.transaction() as tx:
            tx.execute("INSERT INTO items VALUES (?, ?, ?)", ("during", b"", 2))
        cluster.start()
        for _ in range(100):  # the pool reconnects in the background; the dedicated one on its next use
            try:
                with db.transaction() as tx:
                    tx.execute("INSERT INTO items VALUES (?, ?, ?)", ("after", b"", 3))
                break
            except Unavailable:
                threading.Event().wait(0.1)
        with db.transaction() as tx:
            assert [row[0] for row in tx.execute("SELECT k FROM items ORDER BY k")] == ["after", "before"]
        db.close()
    finally:
        storage.close_all(url)
