"""A throw-away PostgreSQL cluster for the tests: Debian's server binaries, a cluster made in a
temporary folder, started on a free port of 127.0.0.1, removed at the end.

    with PostgresCluster() as cluster:
        url = cluster.new_database()        # an empty database of its own, as a postgresql:// URL
        cluster.restart()                   # what an outage looks like to the server

initdb refuses to run as root, so as root the cluster belongs to the unprivileged `postgres`
user that Debian's package creates (or `nobody`).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from server_process import free_port

__all__ = ["PostgresCluster", "postgres_bin"]


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest installed), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


class PostgresCluster:
    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL's server is not installed: `make test-scale` installs Debian's postgresql")
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="waystation-pg-"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres" if _has_user("postgres") else "nobody"
            shutil.chown(self.root, self.user)
        self._names = itertools.count(1)

    @property
    def admin_url(self) -> str:
        return f"postgresql://waystation@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://waystation@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "waystation", "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--locale=C.UTF-8")
        # fsync off: a test cluster never outlives the machine, and commits stay cheap on a
        # shared disk; the restart test stops it cleanly (a checkpoint), so nothing is lost.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=400 "
                  "-c fsync=off -c full_page_writes=off -c shared_buffers=64MB")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop", check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (every connection dropped), stay down `down_seconds`, start it again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def new_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "waystation", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-qAtc", statement).stdout

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.bin / program), *args], user=self.user, capture_output=True, text=True,
                                cwd=self.root, timeout=120)
        if check and result.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:] if (self.root / "log").exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log}")
        return result


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
