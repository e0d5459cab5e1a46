"""Waystation's exception tree, drawn once, and the one error vocabulary every host speaks.

    WaystationError                 code
    ├── ArgumentError               invalid-argument        a workflow function was called with bad arguments
    ├── WorkflowError               workflow-import-failed  a workflow script failed to import or exports nothing
    │   └── NoSuchFunctionError     no-such-function        a function the workflow does not export was called
    ├── ModelError                  model-error             a model failed to load or run (the runtime's error chained)
    ├── BundleError                 bundle-error            a bundle or its manifest is malformed or fails verification
    │   └── SmokeCheckError         smoke-check-failed      a bundle's model does not answer its sample input
    ├── StateError                  state-error             a state document refused an update or a root's kind
    └── DataError                   data-error              an event or query broke a table's schema
        └── StaleFeaturesError      stale-features          a feature table's copy is older than its max_age

Any other exception a workflow function raises is `workflow-error` (its Python type rides along
as `pythonType`); an exception from nowhere else is a bug in Waystation: `internal-error`.
`error_code` is the only place that maps an exception to its code: the worker's reply to the
page (`_bridge._error`) and `waystation run` both use it, and docs/errors.md lists every code.
"""

from __future__ import annotations

import contextlib
import traceback
from typing import Any

__all__ = [
    "ArgumentError",
    "BundleError",
    "DataError",
    "INTERNAL_ERROR",
    "ModelError",
    "NoSuchFunctionError",
    "SmokeCheckError",
    "StaleFeaturesError",
    "StateError",
    "WORKFLOW_ERROR",
    "WaystationError",
    "WorkflowError",
    "error_code",
    "error_detail",
    "mark_raised_by_workflow",
    "python_codes",
    "raised_by_workflow",
]

WORKFLOW_ERROR = "workflow-error"
INTERNAL_ERROR = "internal-error"
# Set on an exception that left a workflow function: its code is workflow-error, not a bug of ours.
_RAISED_BY = "__waystation_raised_by__"


class WaystationError(Exception):
    """Base of every error Waystation raises on purpose; `code` is its name in the page and on the CLI."""

    code = "waystation-error"


class ArgumentError(WaystationError, TypeError):
    """A workflow function was called with arguments that do not fit its signature."""

    code = "invalid-argument"


class WorkflowError(WaystationError):
    """A workflow script is malformed: it failed to import, or it exports no function."""

    code = "workflow-import-failed"


class NoSuchFunctionError(WorkflowError):
    """A function the workflow script does not export was called."""

    code = "no-such-function"


class ModelError(WaystationError):
    """A model failed to load or to run."""

    code = "model-error"


class BundleError(WaystationError):
    """A bundle or its manifest is malformed or fails verification."""

    code = "bundle-error"


class SmokeCheckError(BundleError):
    """A model of a bundle failed its smoke check: it did not answer its sample input within its output schema."""

    code = "smoke-check-failed"


class StateError(WaystationError):
    """A state document (`ctx.state(name)`) refused an update, or a root asked for as another kind."""

    code = "state-error"


class DataError(WaystationError):
    """An event broke its table's schema (the table and field are named), or a query named no such table or column."""

    code = "data-error"


class StaleFeaturesError(DataError):
    """A feature table's copy on the device is older than the bundle's `max_age` for it (the age is named)."""

    code = "stale-features"


def mark_raised_by_workflow(exc: BaseException, function: str) -> None:
    """Remember that `exc` left the workflow function `function` (so it is the workflow's, not a bug of ours)."""
    with contextlib.suppress(AttributeError, TypeError):  # a type without a __dict__ stays internal-error
        setattr(exc, _RAISED_BY, function)


def raised_by_workflow(exc: BaseException) -> bool:
    return getattr(exc, _RAISED_BY, None) is not None


def error_code(exc: BaseException) -> str:
    """The code of an exception: its own for a WaystationError, workflow-error, or internal-error (a bug)."""
    if isinstance(exc, WaystationError):
        return exc.code
    return WORKFLOW_ERROR if raised_by_workflow(exc) else INTERNAL_ERROR


def error_detail(exc: BaseException) -> dict[str, Any]:
    """What crosses to the page: {code, message, pythonType, traceback}, each a field of its own."""
    return {
        "code": error_code(exc),
        "message": str(exc),
        "pythonType": type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc, limit=-3)),
    }


def python_codes() -> set[str]:
    """Every code Python can give an error (docs/errors.md must list each)."""
    codes, todo = {WORKFLOW_ERROR, INTERNAL_ERROR}, [WaystationError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    return codes
