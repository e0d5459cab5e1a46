"""Which optional dependencies (pyproject.toml's extras) each `waystation` command needs.

`pip install waystation` is enough for `waystation run` on a built bundle (onnxruntime, pycrdt);
serving, building and the bundle recipes each have an extra. A command that reaches a module of
an extra that is not installed ends with one line naming the extra, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["COMMAND_EXTRAS", "EXTRA_MODULES", "command_name", "missing_extra"]

# Top-level modules of each extra's distributions (import names, not distribution names).
# Build first: a module two extras share is named by the build extra when no command claims it.
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "build": frozenset({"cryptography", "fastcdc", "hatchling", "onnx", "tqdm"}),
    "server": frozenset({"cryptography", "starlette", "tqdm", "uvicorn", "websockets", "zxcvbn"}),
    "models": frozenset({"onnxscript", "safetensors", "skl2onnx", "sklearn"}),
}

# The extra a command needs beyond the core, by command as typed (`waystation bundle publish`).
COMMAND_EXTRAS: dict[str, str] = {
    "build": "build",
    "bundle build": "build",
    "bundle diff": "build",
    "bundle logging": "server",
    "bundle publish": "server",
    "bundle revoke": "server",
    "bundle rollback": "server",
    "events export": "server",
    "features list": "server",
    "features publish": "server",
    "keys": "build",
    "new": "build",
    "serve": "server",
}


def command_name(handler: Callable[..., Any]) -> str:
    """The command a handler runs, from its name: `_bundle_publish` -> 'bundle publish'."""
    return handler.__name__.strip("_").replace("_", " ")


def missing_extra(exc: BaseException, command: str) -> str | None:
    """The line to print when `exc` is a module of an extra that is not installed, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.partition(".")[0]
    owners = [extra for extra, modules in EXTRA_MODULES.items() if module in modules]
    if not owners:
        return None
    # The command's own extra when the module is one of its; else the extra that brings it
    # (`waystation run` on a bundle source builds it first, and so needs the build extra).
    extra = COMMAND_EXTRAS.get(command)
    if extra not in owners:
        extra = owners[0]
    return f"waystation {command} needs the {extra} extra ({module} is not installed): pip install 'waystation[{extra}]'"
