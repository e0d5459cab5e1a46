"""Workflow scripts: plain Python modules whose exported functions a page or CLI can call.

    from waystation.device import Tensor, export

    @export
    async def predict(ctx, pixels: list[float]) -> dict:
        out = await ctx.models["classifier"].run({"input": Tensor("float32", pixels, (1, 64))})
        return {"label": out["label"].tolist()[0]}

Each exported function takes the call's `Context` first, then its arguments, which arrive
as JSON-able values and are checked against the function's annotations before it runs.
"""

from __future__ import annotations

import collections.abc
import importlib.util
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ArgumentError, WorkflowError
from .tensor import Tensor

__all__ = ["Workflow", "export", "to_jsonable"]

_EXPORT_ATTR = "__waystation_export__"


def export(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Mark a function of a workflow script as callable from the page and the CLI."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _EXPORT_ATTR, name or f.__name__)
        return f

    return mark(fn) if fn is not None else mark


class Workflow:
    """The exported functions of one loaded workflow script."""

    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions = functions

    @classmethod
    def load(cls, path: Path, module_name: str) -> Workflow:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise WorkflowError(f"cannot load workflow script {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise WorkflowError(f"workflow script {path.name} failed to import: {type(exc).__name__}: {exc}") from exc
        return cls.from_module(module)

    @classmethod
    def from_module(cls, module: types.ModuleType) -> Workflow:
        functions = {
            getattr(obj, _EXPORT_ATTR): obj for obj in vars(module).values() if callable(obj) and hasattr(obj, _EXPORT_ATTR)
        }
        if not functions:
            raise WorkflowError(f"workflow script {module.__name__} exports no function (use @export)")
        return cls(functions)

    def describe(self) -> dict[str, list[str]]:
        """{function name: its parameter names}, for `app.functions` in the page."""
        return {name: list(inspect.signature(fn).parameters)[1:] for name, fn in self.functions.items()}

    async def call(self, name: str, args: Any, ctx: Any) -> Any:
        fn = self.functions.get(name)
        if fn is None:
            raise WorkflowError(f"no exported function {name!r}; the workflow exports {sorted(self.functions)}")
        bound = _bind(name, fn, ctx, args)
        result = fn(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _bind(name: str, fn: Callable[..., Any], ctx: Any, args: Any) -> inspect.BoundArguments:
    if args is None:
        args = {}
    if not isinstance(args, (dict, list, tuple)):
        raise ArgumentError(f"{name}(): arguments must be an object of named arguments or an array, not {type(args).__name__}")
    sig = inspect.signature(fn)
    try:
        bound = sig.bind(ctx, **args) if isinstance(args, dict) else sig.bind(ctx, *args)
    except TypeError as exc:
        raise ArgumentError(f"{name}(): {exc}") from None
    hints = _hints(fn)
    for param, value in list(bound.arguments.items())[1:]:
        expected = hints.get(param)
        if expected is not None and not _matches(value, expected):
            raise ArgumentError(
                f"{name}(): parameter {param!r} expects {_type_name(expected)}, got {type(value).__name__}"
            )
    return bound


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}  # unresolved annotations are documentation, not a contract


def _matches(value: Any, expected: Any) -> bool:
    """A JSON-level check of simple annotations; anything richer is left to the function."""
    if expected is Any or expected is object:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, collections.abc.Sequence):
        item = (typing.get_args(expected) or (Any,))[0]
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if origin is dict:
        key, val = typing.get_args(expected) or (Any, Any)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, val) for k, v in value.items())
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) is None and hasattr(expected, "__name__"):
        return str(expected.__name__)
    return str(expected).replace("typing.", "")


def to_jsonable(value: Any) -> Any:
    """Turn a workflow result into plain JSON data (Tensors become nested lists)."""
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars on CPython
        return value.tolist()
    return value
