"""Raw HTTP over sockets for the HTTP-layer tests, beside the real server (`server_process`).

Raw sockets, because an attack test must send what no well-behaved client would: nothing, a
header a byte at a time, a body that never ends, a path with '..' in it.
"""

from __future__ import annotations

import socket

from server_process import Server

__all__ = ["Server", "raw_request", "read_response"]


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
