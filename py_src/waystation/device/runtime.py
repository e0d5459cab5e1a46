"""Open a built bundle on the active host and call its workflow functions.

The same code serves both hosts: the worker in the page and `waystation run` on CPython
open a bundle folder with `App.open` and call functions with `App.call`.

    app = await App.open("dist/bundles/digits/1.0.0")
    result = await app.call("predict", {"pixels": [...]})
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .context import Context
from .data import DeviceData, find_hooks
from .errors import BundleError
from .hosts import DataBackend, Host, StateBackend, default_data_backend, default_host
from .manifest import Manifest
from .model import Model
from .signature import TrustedKey, verify_manifest
from .tensor import Tensor
from .workflow import Workflow, to_jsonable

__all__ = ["App", "BundleFiles"]

_module_ids = itertools.count()


class BundleFiles:
    """Read-only access to the files a bundle ships (tokenizers, labels, samples)."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self._root = root
        self._manifest = manifest

    def path(self, name: str) -> Path:
        if name not in self._manifest.files:
            raise BundleError(f"bundle {self._manifest.name!r} has no file {name!r}")
        return self._root / name

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def read_text(self, name: str) -> str:
        return self.path(name).read_text(encoding="utf-8")

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_text(name))


class App:
    """A bundle opened on a host: its manifest, models and workflow."""

    def __init__(
        self, manifest: Manifest, models: dict[str, Model], workflow: Workflow, files: BundleFiles,
        *, hooks: dict[str, Any] | None = None, data: DataBackend | None = None, states: StateBackend | None = None,
    ) -> None:
        self.manifest = manifest
        self.models = models
        self.workflow = workflow
        self.files = files
        self._hooks = hooks or {}
        self._backend = data
        self._data: DeviceData | None = None
        self._states = states  # None: the host's (hosts.default_state_backend)

    @property
    def data(self) -> DeviceData:
        """The bundle's event and feature tables, in the host's database (opened on first use)."""
        if self._data is None:
            backend = self._backend or default_data_backend()
            self._data = DeviceData(backend, self.manifest.name, self.manifest.declarations, self._hooks, self._context)
        return self._data

    def _context(self, states: StateBackend | None = None) -> Context:
        states = states if states is not None else self._states
        return Context(self.models, self.manifest.name, self.files, states=states, data=lambda: self.data)

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    async def open(
        cls, root: str | Path, *, host: Host | None = None, verify: bool = True,
        trusted_keys: Iterable[TrustedKey] | None = None, data: DataBackend | None = None,
        states: StateBackend | None = None,
    ) -> App:
        """Load a bundle folder: check its files against the manifest, load models, import the workflow.

        With `trusted_keys` (CPython only: the browser checks signatures with WebCrypto), a
        bundle whose manifest is not signed by one of them is refused. `data` is where its
        events and feature tables live (default: the host's, `hosts.default_data_backend()`);
        `states` where `ctx.state` keeps its documents (default: `hosts.default_state_backend()`).
        """
        root = Path(root)
        manifest = Manifest.from_json(_read(root / "manifest.json"))
        if trusted_keys is not None:
            verify_manifest(manifest, trusted_keys)
        if verify:
            for entry in manifest.files.values():
                _verify(root, entry.path, entry.size, entry.sha256)
        host = host or default_host()
        models: dict[str, Model] = {}
        for name, model in manifest.models.items():
            label = f"{manifest.name}/{name}"
            session = await host.preloaded_model(str(root / model.file), label=label)
            if session is None:
                session = await host.load_model(_read(root / model.file), label=label)
            models[name] = Model(name, session)
        module_name = f"waystation_bundle_{manifest.name}_{next(_module_ids)}"
        workflow = Workflow.load(root / manifest.workflow, module_name)
        hooks = find_hooks(sys.modules[module_name], manifest.declarations.events)
        return cls(manifest, models, workflow, BundleFiles(root, manifest), hooks=hooks, data=data, states=states)

    async def call(
        self, name: str, args: Any = None, *, tensors: list[Tensor] | None = None, states: StateBackend | None = None,
    ) -> dict[str, Any]:
        """Run an exported function: {"result": JSON-able data, "metrics": {...}, "ms": wall time}.

        Tensors in the result become nested lists, or, when `tensors` is a list, placeholders
        for the tensors appended to it (see `to_jsonable`). `states` is where `ctx.state` finds
        its documents (default: the host's; the server passes the calling user's).
        """
        ctx = self._context(states)
        start = time.perf_counter()
        result = await self.workflow.call(name, args, ctx)
        ms = (time.perf_counter() - start) * 1000
        return {"result": to_jsonable(result, tensors), "metrics": ctx.metrics.values, "ms": ms}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.manifest.name,
            "version": self.manifest.version,
            "functions": self.workflow.describe(),
            "tensorParams": self.workflow.tensor_params(),
            "offload": self.workflow.offload(),
            "models": {name: m.describe() for name, m in self.models.items()},
        }

    def close(self) -> None:
        for model in self.models.values():
            model.close()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle file {path.name!r} cannot be read: {exc.strerror}") from None


def _verify(root: Path, name: str, size: int, sha256: str) -> None:
    data = _read(root / name)
    if len(data) != size:
        raise BundleError(f"bundle file {name!r} has {len(data)} bytes, the manifest says {size}")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BundleError(f"bundle file {name!r} does not match its sha256 in the manifest")
