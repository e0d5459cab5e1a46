"""The device side of Waystation: pure Python that runs in Pyodide and on CPython alike.

Workflow scripts import from here:

    from waystation.device import Tensor, export
"""

from .context import Context, Metrics
from .errors import ArgumentError, BundleError, ModelError, SmokeCheckError, WaystationError, WorkflowError
from .manifest import Manifest
from .model import Model
from .runtime import App, BundleFiles
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
    "Tensor",
    "WaystationError",
    "Workflow",
    "WorkflowError",
    "export",
]
