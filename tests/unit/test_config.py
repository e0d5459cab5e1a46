"""The server's settings: read from the environment, refused when malformed, and every one documented."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from waystation.server.config import ServerConfig, env_name

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def test_settings_come_from_the_environment() -> None:
    config = ServerConfig.from_env({"WAYSTATION_MAX_BODY_BYTES": "1024", "WAYSTATION_HEADER_TIMEOUT": "2.5"})
    assert config.max_body_bytes == 1024 and config.header_timeout == 2.5
    assert config.sockets_per_user == ServerConfig().sockets_per_user  # untouched ones keep their default


def test_overrides_win_over_the_environment() -> None:
    config = ServerConfig.from_env({"WAYSTATION_MAX_BODY_BYTES": "1024"}, max_body_bytes=7)
    assert config.max_body_bytes == 7


@pytest.mark.parametrize(("value", "message"), [("lots", "is not an integer"), ("1.5", "is not an integer"),
                                                ("-3", "must not be negative")])
def test_a_malformed_setting_is_refused_with_its_name(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"WAYSTATION_MAX_BODY_BYTES='{re.escape(value)}' {message}"):
        ServerConfig.from_env({"WAYSTATION_MAX_BODY_BYTES": value})


def test_every_setting_is_documented_with_its_variable_and_default() -> None:
    rows = {}
    for line in DOCS.read_text().splitlines():
        if match := re.match(r"\| `(WAYSTATION_[A-Z_]+)` \| ([^|]+) \|", line):
            rows[match[1]] = match[2].strip()
    for field in fields(ServerConfig):
        name = env_name(field.name)
        assert name in rows, f"{name} is not documented in docs/server.md"
        assert _number(rows[name]) == field.default, f"docs/server.md gives {name} the default {rows[name]!r}"
    assert set(rows) == {env_name(f.name) for f in fields(ServerConfig)}, "docs/server.md documents a setting that does not exist"


def _number(text: str) -> float:
    """`64 KiB`, `1 MiB`, `10 s`, `168 h`, `2000` -> the value in the setting's own unit (bytes, seconds, hours...)."""
    value, _, unit = text.replace(",", "").partition(" ")
    scale = {"KiB": 1 << 10, "MiB": 1 << 20}.get(unit.strip(), 1)
    return float(value) * scale
