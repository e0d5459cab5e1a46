"""What `waystation bundle build` checks once the recipe has run and before anything is signed.

- the workflow script compiles and imports (a SyntaxError or ImportError named with file and
  line), exports at least one function, each taking the call's context first, with resolvable
  annotations (they are the argument checks), under a name no other function takes, and the
  event hooks bundle.toml names;
- each model file is an ONNX model (onnx.load + onnx.checker) and its declared `sample`
  gives exactly its inputs, with their dtypes, ranks and fixed sizes.

Every problem found is returned (`Problem`s), so one build reports them all.

    problems = check_workflow(path, declarations) + check_model(name, path, sample, toml, lines)
"""

from __future__ import annotations

import inspect
import itertools
import sys
import traceback
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from ..device.data import find_hooks
from ..device.data.schema import EventTable
from ..device.errors import WorkflowError
from ..device.workflow import Workflow
from .source import BundleSource
from .validate import InvalidBundleError, Lines, Problem, did_you_mean

__all__ = ["check_model", "check_source", "check_workflow"]

_EXPORT_ATTR = "__waystation_export__"  # set by waystation.device.export
_module_ids = itertools.count()


def check_source(source: BundleSource, made: Path) -> dict[str, Path]:
    """Where each file of the bundle comes from (the recipe's output `made`, else the source
    folder), once every check passes; InvalidBundleError listing every problem otherwise."""
    toml = source.root / "bundle.toml"
    lines = Lines(toml.read_text(encoding="utf-8"))
    wanted = [(source.workflow, ("workflow",)), *((f, ("files",)) for f in source.files),
              *((m["file"], ("models", k, "file")) for k, m in source.models.items())]
    origins: dict[str, Path] = {}
    problems = []
    for name, keys in wanted:
        origin = made / name if (made / name).is_file() else source.root / name
        if origin.is_file():
            origins[name] = origin
        else:
            problems.append(Problem(toml, lines.find(keys), f"{name!r} is neither made by the recipe nor in {source.root}"))
    if source.workflow in origins:
        problems += check_workflow(origins[source.workflow], source.data.events)
        problems += _alert_functions(source, origins[source.workflow], toml, lines)
    for key, model in source.models.items():
        if model["file"] in origins:
            problems += check_model(key, origins[model["file"]], model.get("sample"), toml, lines)
    if problems:
        raise InvalidBundleError(problems, f"bundle {source.name!r} {source.version}")
    return origins


def check_workflow(path: Path, events: dict[str, EventTable]) -> list[Problem]:
    """Problems of the workflow script at `path` (none when it is fit to ship)."""
    source = path.read_text(encoding="utf-8")
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        return [Problem(path, exc.lineno, f"SyntaxError: {exc.msg}")]
    module_name = f"waystation_check_{next(_module_ids)}"
    try:
        workflow = Workflow.load(path, module_name)
    except WorkflowError as exc:
        cause = exc.__cause__
        if cause is None:  # the script imports but exports nothing
            return [Problem(path, None, "exports no function: mark the functions a page may call with @export "
                                        "(from waystation.device import export)")]
        return [Problem(path, _line_in(path, cause), f"{type(cause).__name__}: {cause} (while importing it)")]
    module = sys.modules.pop(module_name)  # checked, not kept: the build loads its own copy
    problems = _exports(path, module, workflow)
    try:
        find_hooks(module, events)
    except WorkflowError as exc:
        problems.append(Problem(path, None, str(exc)))
    return problems


def _alert_functions(source: BundleSource, workflow: Path, toml: Path, lines: Lines) -> list[Problem]:
    """An alert watching a function the workflow does not export would never fire: name it."""
    wanted = [(i, a) for i, a in enumerate(source.telemetry.alerts) if a.function is not None]
    if not wanted:
        return []
    module_name = f"waystation_check_{next(_module_ids)}"
    try:
        exported = Workflow.load(workflow, module_name).functions
    except WorkflowError:
        return []  # check_workflow names why it does not load
    finally:
        sys.modules.pop(module_name, None)
    return [Problem(toml, lines.find_item(("telemetry", "alerts", f"#{i}", "function")),
                    f"[[telemetry.alerts]] {alert.name!r}: function {alert.function!r} is not exported by "
                    f"{source.workflow}{did_you_mean(str(alert.function), exported)} (exported: {', '.join(sorted(exported))})")
            for i, alert in wanted if alert.function not in exported]


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of `path` the exception passed through last (where the script's import failed)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return line


def _exports(path: Path, module: ModuleType, workflow: Workflow) -> list[Problem]:
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    for attr, obj in vars(module).items():
        name = getattr(obj, _EXPORT_ATTR, None) if callable(obj) else None
        if name is None:
            continue
        line = _line_of(obj, path)
        if name in owners:
            problems.append(Problem(path, line, f"two functions are exported as {name!r}: {owners[name]} and {attr}"))
        owners.setdefault(name, attr)
        problems += [Problem(path, line, message) for message in _function_problems(name, obj)]
    return problems


def _function_problems(name: str, fn: Any) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        return [f"exported {name!r} has no signature Python can read: {exc}"]
    first = params[0] if params else None
    if first is None or first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD, first.VAR_POSITIONAL):
        return [f"exported function {name!r} must take the call's context first: def {name}(ctx, ...)"]
    try:
        typing.get_type_hints(fn)
    except Exception as exc:  # an annotation that names nothing: its argument would go unchecked
        return [f"exported function {name!r}: its annotations cannot be resolved ({type(exc).__name__}: {exc}), "
                "and they are what its arguments are checked against"]
    return []


def _line_of(fn: Any, path: Path) -> int | None:
    code = getattr(fn, "__code__", None)
    return code.co_firstlineno if code is not None and Path(code.co_filename) == path else None


def check_model(name: str, path: Path, sample: dict[str, Any] | None, toml: Path, lines: Lines) -> list[Problem]:
    """Problems of model `name`'s file at `path` and of its sample input declared in `toml`."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the bytes are not a model
        return [Problem(path, None, f"{path.name} is not an ONNX model ({type(exc).__name__}: {exc}); "
                                    f"[models.{name}] file must be an .onnx file the recipe writes")]
    if not model.graph.node and not model.graph.input and not model.opset_import:
        return [Problem(path, None, f"{path.name} is not an ONNX model (it holds no graph); "
                                    f"[models.{name}] file must be an .onnx file the recipe writes")]
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Problem(path, None, f"{path.name} is not a valid ONNX model: {first}")]
    if sample is None:
        return []
    return [Problem(toml, lines.find(("models", name, "sample")), f"[models.{name}] sample: {message}")
            for message in _sample_problems(model, sample)]


def _sample_problems(model: Any, sample: dict[str, Any]) -> list[str]:
    initializers = {i.name for i in model.graph.initializer}
    inputs = {v.name: v.type.tensor_type for v in model.graph.input if v.name not in initializers}
    described = ", ".join(f"{n} {_describe(t)}" for n, t in inputs.items())
    problems = []
    for given in sample:
        if given not in inputs:
            hint = did_you_mean(given, inputs).removeprefix("; ")
            problems.append(f"the model has no input {given!r}{f' ({hint})' if hint else ''}; its inputs: {described}")
    for input_name, tensor in inputs.items():
        spec = sample.get(input_name)
        if spec is None:
            problems.append(f"input {input_name!r} ({_describe(tensor)}) is missing; the sample must give every input")
            continue
        dtype = _dtype(tensor)
        if dtype != spec["dtype"]:
            problems.append(f"input {input_name!r} is {spec['dtype']}, the model takes {dtype}")
        dims = _dims(tensor)
        shape = spec["shape"]
        if len(shape) != len(dims) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape)):
            problems.append(f"input {input_name!r} has shape {shape}, the model takes {_shape_text(dims)}")
    return problems


def _dims(tensor: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]


def _shape_text(dims: list[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _describe(tensor: Any) -> str:
    return f"{_dtype(tensor)} {_shape_text(_dims(tensor))}"


def _dtype(tensor: Any) -> str:
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        return str(tensor_dtype_to_np_dtype(tensor.elem_type))
    except (KeyError, ValueError):
        return "?"
