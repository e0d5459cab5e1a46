"""The extras split holds: each command runs with only the core and its own extra importable.

Each case runs the real `waystation` command in a child process whose import system refuses
the other extras' modules (a meta path finder ahead of every other), as a machine that
installed only `waystation[EXTRA]` would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from waystation.extras import COMMAND_EXTRAS, EXTRA_MODULES, command_name, missing_extra

from server_process import free_port

ROOT = Path(__file__).resolve().parents[2]
DEV_MODULES = frozenset({"httpx", "hypothesis", "mypy", "pandas", "playwright", "pytest", "ruff", "tokenizers"})

# Run as `python -c`: refuse the modules named in argv[1], then be the `waystation` command.
REFUSING_CLI = """
import sys
from importlib.abc import MetaPathFinder

REFUSED = frozenset(sys.argv[1].split(","))


class Refuse(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None


sys.meta_path.insert(0, Refuse())
from waystation.cli import main

sys.exit(main(sys.argv[2:]))
"""


def refused_except(*extras: str) -> set[str]:
    """Every optional module but those of `extras` (the dev extra's are always refused)."""
    allowed = set().union(*(EXTRA_MODULES[e] for e in extras))
    return (set().union(*EXTRA_MODULES.values()) | DEV_MODULES) - allowed


def waystation(refused: Iterable[str], *args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", REFUSING_CLI, ",".join(sorted(refused)), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_refusing_finder_refuses() -> None:
    """The harness itself: a refused module fails to import, so the cases below can fail."""
    out = waystation({"starlette"}, "serve", "--site", ROOT / "no-such-site", "--port", free_port())
    assert out.returncode != 0
    assert "starlette" in out.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`waystation new` and `waystation bundle build` with only the build extra importable."""
    work = tmp_path_factory.mktemp("extras")
    created = waystation(refused_except("build"), "new", "scores", "--dir", work)
    assert created.returncode == 0, created.stderr
    out = waystation(refused_except("build"), "bundle", "build", work / "scores", "--out", work / "bundles")
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def test_build_needs_only_the_build_extra(built: Path) -> None:
    assert (built / "manifest.json").is_file()
    assert json.loads((built / "manifest.json").read_text())["name"] == "scores"


def test_run_needs_only_the_core(built: Path, tmp_path: Path) -> None:
    args = json.dumps({"rows": [[1, 0, 0, 0]]})
    out = waystation(refused_except(), "run", built, "score", "--args", args, "--data", tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"label": 0, "scores": [1.5, -0.5]}]  # x @ W + b of the scaffold's fixed weights


def test_serve_needs_only_the_server_extra(built: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "boot.json").write_text("{}")
    (site / "index.html").write_text("<!doctype html>")
    port = free_port()
    command = [sys.executable, "-c", REFUSING_CLI, ",".join(sorted(refused_except("server"))),
               "serve", "--site", str(site), "--data", str(tmp_path / "data"), "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        health = _health(f"http://127.0.0.1:{port}/api/health", server)
        assert health.get("ok") is True, health
        published = waystation(refused_except("server"), "bundle", "publish", built, "--data", tmp_path / "data")
        assert published.returncode == 0, published.stderr
        assert "published scores 0.1.0" in published.stdout
    finally:
        server.terminate()
        server.wait(10)


def _health(url: str, server: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"waystation serve ended with {server.returncode}: {server.stderr.read() if server.stderr else ''}")
        try:
            return dict(httpx.get(url, timeout=2).json())
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail("waystation serve did not answer /api/health within 60 s")


@pytest.mark.parametrize(("args", "line"), [
    (["serve", "--site", "no-such-site"],
     "waystation serve needs the server extra (starlette is not installed): pip install 'waystation[server]'"),
    (["keys", "--out", "{tmp}"],
     "waystation keys needs the build extra (cryptography is not installed): pip install 'waystation[build]'"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path, args: list[str], line: str) -> None:
    out = waystation({"starlette", "cryptography"}, *(a.format(tmp=tmp_path) for a in args))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [line]


def test_every_command_with_an_extra_is_a_command() -> None:
    from waystation.cli import _parser

    handlers = set()
    pending = [_parser()]
    while pending:
        parser = pending.pop()
        handler = parser.get_default("handler")
        if handler is not None:
            handlers.add(command_name(handler))
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            pending.extend(action.choices.values())
    assert set(COMMAND_EXTRAS) <= handlers, set(COMMAND_EXTRAS) - handlers
    assert {"run", "serve", "build", "bundle publish", "events export"} <= handlers


def test_missing_extra_names_the_extra_that_brings_the_module() -> None:
    def missing(name: str) -> ModuleNotFoundError:
        return ModuleNotFoundError(f"No module named {name!r}", name=name)

    assert missing_extra(missing("onnx.helper"), "run") == (
        "waystation run needs the build extra (onnx is not installed): pip install 'waystation[build]'")
    assert missing_extra(missing("cryptography"), "serve") == (
        "waystation serve needs the server extra (cryptography is not installed): pip install 'waystation[server]'")
    assert missing_extra(missing("does_not_exist"), "serve") is None
    assert missing_extra(ValueError("not an import"), "serve") is None
