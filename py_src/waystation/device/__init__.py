"""The device side of Waystation: pure Python that runs in Pyodide and on CPython alike.

Workflow scripts import from here:

    from waystation.device import Tensor, event_hook, export
"""

from .context import Context, Metrics
from .data import Query, event_hook
from .errors import (
    ArgumentError,
    BundleError,
    DataError,
    ModelError,
    SmokeCheckError,
    StaleFeaturesError,
    StateError,
    WaystationError,
    WorkflowError,
)
from .manifest import Manifest
from .model import Model
from .runtime import App, BundleFiles
from .state import StateCounter, StateDoc, StateList, StateMap, StateText, open_state
from .tensor import Tensor
from .workflow import Workflow, export

__all__ = [
    "App",
    "ArgumentError",
    "BundleError",
    "BundleFiles",
    "Context",
    "DataError",
    "Manifest",
    "Metrics",
    "Model",
    "ModelError",
    "Query",
    "SmokeCheckError",
    "StaleFeaturesError",
    "StateCounter",
    "StateDoc",
    "StateError",
    "StateList",
    "StateMap",
    "StateText",
    "Tensor",
    "WaystationError",
    "Workflow",
    "WorkflowError",
    "event_hook",
    "export",
    "open_state",
]
