"""A `waystation serve` child process for the HTTP-layer tests, and raw HTTP over sockets.

Like tests/unit/test_sync_server.py's Server, with the environment (and open-files limit) of
its own, its stderr kept in a file to read, and the process's memory and descriptors to watch.
Raw sockets, because an attack test must send what no well-behaved client would: nothing, a
header a byte at a time, a body that never ends, a path with '..' in it.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["Server", "raw_request", "read_response"]

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """`waystation serve` in a child process, configured by `env` (WAYSTATION_* settings)."""

    def __init__(self, site: Path, data: Path, open_files: tuple[int, int] | None = None, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.site, self.data, self.env, self.open_files = site, data, env, open_files
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


def raw_request(port: int, head: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (request line and headers, without the blank line) as is; the response's status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return read_response(s)


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response (a Connection: close one, or one with Content-Length) from `s`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", -1))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body
