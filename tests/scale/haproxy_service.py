"""HAProxy (Debian's) in front of server instances, configured from deploy/haproxy.cfg, the
template the docs show: the tests run the configuration an operator is told to run.

    with HAProxy(["127.0.0.1:8001", "127.0.0.1:8002"], folder) as lb:
        lb.url                          # http://127.0.0.1:PORT
        lb.states()                     # {"w1": "UP", "w2": "DOWN", ...}
        lb.server_of(local_port)        # which instance a client connection went to
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from server_process import ROOT, free_port

__all__ = ["TEMPLATE", "HAProxy", "render"]

TEMPLATE = ROOT / "deploy" / "haproxy.cfg"


def render(bind: str, servers: dict[str, str], stats_socket: Path, template: Path = TEMPLATE) -> str:
    """The template with its placeholders filled: `servers` maps a name to host:port."""
    lines = "\n".join(f"    server {name} {address} check" for name, address in servers.items())
    text = template.read_text()
    for key, value in {"{{BIND}}": bind, "{{STATS_SOCKET}}": str(stats_socket), "{{SERVERS}}": lines}.items():
        assert key in text, f"{template} has no {key}"
        text = text.replace(key, value)
    return text


class HAProxy:
    def __init__(self, servers: list[str], folder: Path) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise RuntimeError("haproxy is not installed: `make services` installs Debian's")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.names = {f"w{i + 1}": address for i, address in enumerate(servers)}
        self.socket = folder / "haproxy.sock"
        self.config = folder / "haproxy.cfg"
        self.log = folder / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(render(f"127.0.0.1:{self.port}", self.names, self.socket))
        check = subprocess.run([self.binary, "-c", "-f", str(self.config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([self.binary, "-db", "-f", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.socket.exists() and "UP" in self.states().values():
                    return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"haproxy saw no instance up within 20 s\n{self.log.read_text()}")

    def command(self, line: str) -> str:
        """One command on the admin socket (`show stat`, `show sess`, `set server ...`)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each instance's state as HAProxy's health checks see it: UP, DOWN, MAINT, ..."""
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        found = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(",")))
            if values.get("pxname") == "instances" and values.get("svname") in self.names:
                found[values["svname"]] = values["status"].split(" ")[0]
        return found

    def wait_for(self, name: str, state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.states().get(name) != state:
            assert time.monotonic() < deadline, f"{name} never became {state}: {self.states()}"
            time.sleep(0.05)

    def name_of(self, address: str) -> str:
        return next(name for name, found in self.names.items() if found == address)

    def server_of(self, client_port: int) -> str | None:
        """The instance HAProxy connected the client connection from 127.0.0.1:`client_port` to."""
        for line in self.command("show sess").splitlines():
            if f"src=127.0.0.1:{client_port} " in line:
                for field in line.split():
                    if field.startswith("srv="):
                        return field[4:]
        return None

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
