"""Strict reading of lib0's encoding (var uints, length-prefixed bytes and strings).

pycrdt's `Decoder` reads past the end of a short message without complaint; this raises
`ProtocolError` instead, so that a malformed message is refused, never half-read.
"""

from __future__ import annotations

from .errors import ProtocolError

__all__ = ["Reader"]

_MAX_VAR_UINT = 2**53 - 1  # lib0 reads var uints into JS numbers


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def var_uint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise ProtocolError("message ends inside a number")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if value > _MAX_VAR_UINT:
                raise ProtocolError("number too large")
            if byte < 0x80:
                return value

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        if self.pos + length > len(self.data):
            raise ProtocolError(f"message ends {self.pos + length - len(self.data)} bytes short")
        self.pos += length
        return self.data[self.pos - length : self.pos]

    def var_string(self) -> str:
        try:
            return self.var_bytes().decode()
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} bytes after the end of the message")
