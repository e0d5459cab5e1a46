"""The device side of Waystation: pure Python that runs in Pyodide and on CPython alike.

Workflow scripts import from here:

    from waystation.device import Tensor, export
"""

from .context import Context, Metrics
from .errors import (
    ArgumentError,
    BundleError,
    ModelError,
    SmokeCheckError,
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
    "Manifest",
    "Metrics",
    "Model",
    "ModelError",
    "SmokeCheckError",
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
    "export",
    "open_state",
]
