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
import functools
import importlib.util
import inspect
import sys
import traceback
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ArgumentError, NoSuchFunctionError, WorkflowError, mark_raised_by_workflow
from .log import calling
from .tensor import Tensor

__all__ = ["OFFLOAD_POLICIES", "Workflow", "export", "offload_policy", "tensor_params", "to_jsonable"]

_EXPORT_ATTR = "__waystation_export__"
_OFFLOAD_ATTR = "__waystation_offload__"


OFFLOAD_POLICIES = ("never", "allowed", "on-low-confidence")


def export(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, offload: str = "never",
    threshold: float | None = None, confidence: str = "confidence", writes_state: bool = False,
) -> Any:
    """Mark a function of a workflow script as callable from the page and the CLI.

    `offload` says whether the server may run it for the page (`POST /api/run/...`), and so
    whether its arguments may leave the device: "never" (the default: private data stays on
    the device), "allowed", or "on-low-confidence" (the function returns a dict whose
    `confidence` key holds a number; only when the device's own answer is below `threshold`,
    or the device cannot answer at all, may the page ask the server again). `writes_state`:
    run on the server for a signed-in user, its writes to that user's synced documents are
    kept (otherwise the server runs it on read-only copies and refuses any write).
    """
    policy = _offload_policy(name, offload, threshold, confidence, writes_state)

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _EXPORT_ATTR, name or f.__name__)
        setattr(f, _OFFLOAD_ATTR, policy)
        return f

    return mark(fn) if fn is not None else mark


def offload_policy(fn: Callable[..., Any]) -> dict[str, Any]:
    """An exported function's offload policy: {"offload", "writes_state"[, "threshold", "confidence"]}."""
    return dict(getattr(fn, _OFFLOAD_ATTR, None) or {"offload": "never", "writes_state": False})


def _offload_policy(
    name: str | None, offload: str, threshold: float | None, confidence: str, writes_state: bool,
) -> dict[str, Any]:
    where = f"@export({name!r})" if name else "@export"
    if offload not in OFFLOAD_POLICIES:
        raise WorkflowError(f"{where}: offload={offload!r} is not one of {', '.join(OFFLOAD_POLICIES)}")
    policy: dict[str, Any] = {"offload": offload, "writes_state": bool(writes_state)}
    if offload == "on-low-confidence":
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise WorkflowError(f"{where}: offload='on-low-confidence' needs threshold= a number in (0, 1], "
                                f"got {threshold!r}")
        if not isinstance(confidence, str) or not confidence:
            raise WorkflowError(f"{where}: confidence= must name the result's key holding the confidence")
        policy.update(threshold=float(threshold), confidence=confidence)
    elif threshold is not None:
        raise WorkflowError(f"{where}: threshold= only goes with offload='on-low-confidence'")
    if writes_state and offload == "never":
        raise WorkflowError(f"{where}: writes_state=True needs an offload policy that lets the server run it")
    return policy


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
            raise WorkflowError(_import_failure(path, exc)) from exc
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

    def tensor_params(self) -> dict[str, dict[str, str]]:
        """{function name: {parameter: dtype}} for parameters that take tensors, so the page can send typed arrays."""
        return {name: params for name, fn in self.functions.items() if (params := tensor_params(fn))}

    def offload(self) -> dict[str, dict[str, Any]]:
        """{function name: its offload policy} (see `export`), for the page and the server alike."""
        return {name: offload_policy(fn) for name, fn in self.functions.items()}

    async def call(self, name: str, args: Any, ctx: Any) -> Any:
        fn = self.functions.get(name)
        if fn is None:
            raise NoSuchFunctionError(f"no exported function {name!r}; the workflow exports {sorted(self.functions)}")
        bound = _bind(name, fn, ctx, args)
        try:
            with calling(name):
                result = fn(*bound.args, **bound.kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:  # the workflow's own error (workflow-error), not a bug of Waystation's
            mark_raised_by_workflow(exc, name)
            raise
        return result


def _import_failure(path: Path, exc: Exception) -> str:
    """One line: "workflow.py line 3: SyntaxError: invalid syntax" (the line in the script, when known)."""
    line = exc.lineno if isinstance(exc, SyntaxError) and exc.filename == str(path) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno  # the script's innermost line on the way to the error
    message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    where = f"{path.name} line {line}" if line else path.name
    return f"{where}: {type(exc).__name__}: {message}"


def _bind(name: str, fn: Callable[..., Any], ctx: Any, args: Any) -> inspect.BoundArguments:
    if args is None:
        args = {}
    if not isinstance(args, (dict, list, tuple)):
        raise ArgumentError(f"{name}(): arguments must be an object of named arguments or an array, not {type(args).__name__}")
    sig, checks = _signature(fn)
    try:
        bound = sig.bind(ctx, **args) if isinstance(args, dict) else sig.bind(ctx, *args)
    except TypeError as exc:
        raise ArgumentError(f"{name}(): {exc}") from None
    _pack_tensors(name, fn, bound)
    for param, value in bound.arguments.items():
        check = checks.get(param)
        if check is not None and not check[0](value):
            raise ArgumentError(f"{name}(): {_mismatch(check[1], value, param)}")
    return bound


def _pack_tensors(name: str, fn: Callable[..., Any], bound: inspect.BoundArguments) -> None:
    """A nested list given to a parameter that takes a Tensor becomes one (the page sends typed arrays)."""
    for param, dtype in tensor_params(fn).items():
        value = bound.arguments.get(param)
        if isinstance(value, (list, tuple)):
            try:
                bound.arguments[param] = Tensor(dtype, value)
            except ArgumentError as exc:
                raise ArgumentError(f"{name}(): {param}: {exc}") from None
        elif isinstance(value, Tensor) and value.dtype != dtype:
            raise ArgumentError(f"{name}(): {param}: expected a {dtype} tensor, got {value.dtype}")


@functools.cache
def tensor_params(fn: Callable[..., Any]) -> dict[str, str]:
    """{parameter: dtype} for the parameters annotated `Tensor` (float32) or `Annotated[Tensor, "int64"]`."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}
    found = {}
    for param in list(inspect.signature(fn).parameters)[1:]:
        hint = hints.get(param)
        if hint is Tensor:
            found[param] = "float32"
        elif typing.get_origin(hint) is typing.Annotated and typing.get_args(hint)[0] is Tensor:
            dtypes = [a for a in typing.get_args(hint)[1:] if isinstance(a, str)]
            found[param] = dtypes[0] if dtypes else "float32"
    return found


@functools.cache
def _signature(fn: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, tuple[Callable[[Any], bool], Any]]]:
    """The signature and one compiled checker (with its annotation) per annotated parameter, made once per function."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}  # unresolved annotations are documentation, not a contract
    params = list(sig.parameters)[1:]  # the first is the context
    return sig, {p: (_checker(hints[p]), hints[p]) for p in params if p in hints}


def _checker(expected: Any) -> Callable[[Any], bool]:
    """A JSON-level check of a simple annotation; anything richer is left to the function."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any or expected is object:
        return lambda v: True
    if origin in (typing.Union, types.UnionType):
        arms = [_checker(a) for a in args]
        return lambda v: any(arm(v) for arm in arms)
    if expected is type(None):
        return lambda v: v is None
    if expected is float:  # JSON has one number type: ints are floats too, bools are not
        return lambda v: type(v) is float or type(v) is int
    if expected is int:
        return lambda v: type(v) is int
    if origin in (list, tuple, collections.abc.Sequence):
        if not args or args[0] is Any:
            return lambda v: isinstance(v, (list, tuple))
        item = _checker(args[0])
        return lambda v: isinstance(v, (list, tuple)) and all(map(item, v))
    if origin is dict:
        key, val = (_checker(a) for a in (args or (Any, Any)))
        return lambda v: isinstance(v, dict) and all(key(k) and val(x) for k, x in v.items())
    if isinstance(expected, type):
        return lambda v: isinstance(v, expected)
    return lambda v: True


def _mismatch(expected: Any, value: Any, path: str) -> str:
    """Where `value` breaks `expected`: "features[0][2]: expected float, got str".

    Only called once the compiled check has failed, so the happy path stays one tight loop;
    this walks the value again, down the annotation, to the first element that does not fit.
    """
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        for arm in args:  # the arm of the value's own kind says best where it breaks
            if _same_kind(arm, value):
                return _mismatch(arm, value, path)
    elif origin in (list, tuple, collections.abc.Sequence) and isinstance(value, (list, tuple)) and args:
        item = _checker(args[0])
        for i, v in enumerate(value):
            if not item(v):
                return _mismatch(args[0], v, f"{path}[{i}]")
    elif origin is dict and isinstance(value, dict) and args:
        key, val = _checker(args[0]), _checker(args[1])
        for k, v in value.items():
            if not key(k):
                return f"{path}: key {k!r}: expected {_type_name(args[0])}, got {_value_name(k)}"
            if not val(v):
                return _mismatch(args[1], v, f"{path}[{k!r}]")
    return f"{path}: expected {_type_name(expected)}, got {_value_name(value)}"


def _same_kind(expected: Any, value: Any) -> bool:
    """Whether `value` is the container `expected` wants (its items unchecked), or else fits it."""
    origin = typing.get_origin(expected)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    return _checker(expected)(value)


def _value_name(value: Any) -> str:
    """A value's type name (str, int, list, None), or NaN, Infinity and -Infinity as JSON would spell them."""
    if type(value) is float and value - value != 0:
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return type(value).__name__ if value is not None else "None"


def _type_name(expected: Any) -> str:
    if expected is type(None):
        return "None"
    if typing.get_origin(expected) is None and hasattr(expected, "__name__"):
        return str(expected.__name__)
    return str(expected).replace("typing.", "").replace("NoneType", "None")


def to_jsonable(value: Any, tensors: list[Tensor] | None = None) -> Any:
    """Turn a workflow result into plain JSON data.

    Tensors become nested lists, unless `tensors` is given: then each is appended to it and
    replaced by ``{"$tensor": index, "dtype": ..., "shape": [...]}``, so that a host can move
    its buffer as a typed array instead of as JSON text (the worker does).
    """
    if isinstance(value, Tensor):
        if tensors is None:
            return value.tolist()
        tensors.append(value)
        return {"$tensor": len(tensors) - 1, "dtype": value.dtype, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, tensors) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars on CPython
        return value.tolist()
    return value
