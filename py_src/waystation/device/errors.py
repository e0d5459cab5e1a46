"""Waystation's exception tree, drawn once.

    WaystationError
    ├── ArgumentError      a workflow function was called with bad arguments
    ├── WorkflowError      a workflow script is malformed or names no such function
    ├── ModelError         a model failed to load or run (the runtime's error is chained)
    ├── BundleError        a bundle or its manifest is malformed or fails verification
    │   └── SmokeCheckError  a bundle's model does not answer its sample input within its schema
    ├── StateError         a state document refused an update or a root's kind (Yjs or pycrdt's error chained)
    └── DataError          an event or query broke a table's schema, or named no such table or column
        └── StaleFeaturesError  a feature table's copy on the device is older than its max_age

Errors cross host boundaries translated: an onnxruntime (native) or onnxruntime-web (JS)
error becomes a `ModelError` raised `from` the original, and reaches the page as a
rejected promise carrying the exception type and message.
"""

__all__ = [
    "ArgumentError",
    "BundleError",
    "DataError",
    "ModelError",
    "SmokeCheckError",
    "StaleFeaturesError",
    "StateError",
    "WaystationError",
    "WorkflowError",
]


class WaystationError(Exception):
    """Base of every error Waystation raises on purpose."""


class ArgumentError(WaystationError, TypeError):
    """A workflow function was called with arguments that do not fit its signature."""


class WorkflowError(WaystationError):
    """A workflow script is malformed, or a function it does not export was called."""


class ModelError(WaystationError):
    """A model failed to load or to run."""


class BundleError(WaystationError):
    """A bundle or its manifest is malformed or fails verification."""


class SmokeCheckError(BundleError):
    """A model of a bundle failed its smoke check: it did not answer its sample input within its output schema."""


class StateError(WaystationError):
    """A state document (`ctx.state(name)`) refused an update, or a root asked for as another kind."""


class DataError(WaystationError):
    """An event broke its table's schema (the table and field are named), or a query named no such table or column."""


class StaleFeaturesError(DataError):
    """A feature table's copy on the device is older than the bundle's `max_age` for it (the age is named)."""
