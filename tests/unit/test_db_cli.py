"""`waystation db migrate` / `db status`, and `--database` on the commands that touch the server's
state: in subprocesses, on whichever engine the run uses (`--engine postgresql`: the data folder's
own database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from waystation.server.schema import store_migrations

from server_process import ROOT


def waystation(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "waystation", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_status_says_a_new_data_folder_needs_migrating_and_migrate_brings_every_store_to_its_newest(tmp_path: Path) -> None:
    newest = {name: max(m.version for m in migrations) for name, migrations in store_migrations().items()}
    before = waystation("db", "status", "--data", tmp_path / "data")
    assert before.returncode == 1, before.stderr  # something is due: a deploy script can stop on it
    assert before.stdout.splitlines() == [f"{name}: 0 of {v}  (migrate due)" for name, v in newest.items()]

    migrated = waystation("db", "migrate", "--data", tmp_path / "data")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.splitlines() == [f"{name}: schema version {v}" for name, v in newest.items()]

    again = waystation("db", "migrate", "--data", tmp_path / "data")  # nothing left to do, nothing done twice
    assert again.returncode == 0 and again.stdout == migrated.stdout, again.stderr
    after = waystation("db", "status", "--data", tmp_path / "data")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == [f"{name}: {v} of {v}" for name, v in newest.items()]


def test_a_database_that_is_not_a_postgresql_url_is_refused_with_its_reason(tmp_path: Path) -> None:
    for command in (["db", "migrate"], ["bundle", "rollback", "--bundle", "x"], ["admin", "token"]):
        out = waystation(*command, "--data", tmp_path / "data", "--database", "mysql://root:secret@db/app")
        assert out.returncode == 1, (command, out.stderr)
        assert "is not a postgresql:// URL" in out.stderr and "secret" not in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_a_postgresql_that_does_not_answer_is_one_clear_line(tmp_path: Path) -> None:
    out = waystation("db", "status", "--data", tmp_path / "data", "--database", "postgresql://nobody@127.0.0.1:1/none")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "error: Unavailable: PostgreSQL" in out.stderr, out.stderr
