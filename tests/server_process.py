"""`waystation serve` in a child process, as a user starts it: the one real server every test
layer (and the benchmarks) runs against.

    server = Server(site, data, WAYSTATION_MAX_BODY_BYTES="1024").start()   # its own settings
    ...
    server.stop()

Its stderr is kept in a file beside `data` (`stderr()`), so that a test can read what the server
logged, and is echoed on `stop()` for pytest to show with a failing test.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import httpx

__all__ = ["ROOT", "Server", "free_port", "worst_health_check_while"]

ROOT = Path(__file__).resolve().parents[1]


def worst_health_check_while(url: str, threads: list[threading.Thread]) -> float:
    """Start `threads` (an attack), check `url`/api/health back to back until they end, join
    them; the slowest check in seconds: what another user waited meanwhile."""
    for thread in threads:
        thread.start()
    worst = 0.0
    while any(thread.is_alive() for thread in threads):
        start = time.perf_counter()
        assert httpx.get(f"{url}/api/health", timeout=10).status_code == 200
        worst = max(worst, time.perf_counter() - start)
    for thread in threads:
        thread.join()
    return worst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`waystation serve` in a child process, configured by `env` (WAYSTATION_* settings)."""

    # Tests register, and pages send telemetry, from 127.0.0.1 many times a minute: the address
    # budgets are tested on their own.
    DEFAULT_ENV: ClassVar[dict[str, str]] = {"WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000",
                                             "WAYSTATION_TELEMETRY_REPORTS_PER_MINUTE": "100000"}

    def __init__(self, site: Path, data: Path, open_files: tuple[int, int] | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site, self.data, self.env, self.open_files = site, data, {**self.DEFAULT_ENV, **env}, open_files
        self.stderr_path = data.with_name(data.name + ".stderr")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "waystation", "serve", "--port", str(self.port),
               "--site", str(self.site), "--data", str(self.data)]
        limit: Callable[[], None] | None = None
        if self.open_files is not None:
            limits = self.open_files

            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)

        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                                            stderr=stderr, preexec_fn=limit)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"waystation serve did not come up within 30 s: {self.stderr()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        if self.process and (logged := self.stderr()):
            sys.stderr.write(logged[-20_000:])  # pytest shows it beside a failing test

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def memory_mb(self, field: str = "VmRSS") -> float:
        """A field of /proc/PID/status in MB: VmRSS (now) or VmHWM (the peak so far)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def open_descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))
