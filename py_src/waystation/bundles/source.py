"""A bundle source folder under models/: `bundle.toml`, a recipe, a workflow script.

    name = "digits"
    version = "1.0.1"
    parent = "1.0.0"              # the version this one updates (optional: none for a first version)
    workflow = "workflow.py"
    recipe = "recipe.py"          # build(out_dir, progress) -> {name: path} of what it made
    files = ["samples.json"]      # extra files: made by the recipe, or copied from the folder

    [models.classifier]
    file = "classifier.onnx"      # made by the recipe
    # layout = "as-made"          # keep the recipe's tensor order (default: grouped by layer, bundles/layout.py)
    # The input the smoke check feeds the model on a device before a new version becomes active
    # (optional: without it, each input of the model's schema, symbolic axes as 1, filled with 0).
    sample = { pixels = { dtype = "float32", shape = [1, 64], fill = 0 } }

    [variants.fp32]               # another bundle, NAME-fp32, from the same recipe and workflow
    models.classifier.file = "classifier-fp32.onnx"

    [events.clicks]               # an event table on the device (device/data/schema.py)
    fields = { item_id = "str", dwell_ms = "int?" }
    retention = { days = 7, rows = 100000 }
    relay = ["item_id"]           # the fields that may be relayed to the server
    hook = "check_click"          # optional: a workflow function marked @event_hook("clicks")

    [features.items]              # a global feature table the workflow reads
    key = "item_id"
    max_age = "1h"                # older than this on the device, a read raises StaleFeaturesError

    [telemetry.signals.top_score] # telemetry: declared signals and alerts (device/telemetry.py)
    edges = [0.5, 0.7, 0.9]
    reference = [1, 2, 5, 12]
    [[telemetry.alerts]]
    name = "slow"
    p95_ms = 40
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ..device.data.schema import Declarations
from ..device.errors import BundleError, DataError
from ..device.telemetry import Telemetry
from ..device.telemetry import parse_toml as parse_telemetry
from .validate import read_config

__all__ = ["BundleSource"]


@dataclass(frozen=True)
class BundleSource:
    root: Path
    name: str
    version: str
    description: str
    workflow: str
    recipe: str | None
    files: list[str]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    parent: str | None = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: Declarations = field(default_factory=Declarations)
    telemetry: Telemetry = field(default_factory=Telemetry)

    @classmethod
    def load(cls, root: str | Path) -> BundleSource:
        root = Path(root).resolve()
        config = read_config(root / "bundle.toml")  # every key known and typed, or every problem at once
        try:
            data = Declarations.parse(config.get("events", {}), config.get("features", {}))
        except DataError as exc:  # what spans tables, which read_config checks one by one
            raise BundleError(f"{root / 'bundle.toml'}: {exc}") from None
        return cls(
            root=root,
            name=config["name"],
            version=config["version"],
            description=config.get("description", ""),
            workflow=config["workflow"],
            recipe=config.get("recipe"),
            files=list(config.get("files", [])),
            models=dict(config.get("models", {})),
            parent=config.get("parent"),
            variants=dict(config.get("variants", {})),
            data=data,
            telemetry=parse_telemetry(config.get("telemetry", {}))[0],  # read_config refused any problem of it
        )

    def variant(self, name: str) -> BundleSource:
        """The bundle NAME-VARIANT: this source with the variant's model settings laid over it."""
        if name not in self.variants:
            raise BundleError(f"bundle {self.name!r} has no variant {name!r}; it has {sorted(self.variants)}")
        models = {key: dict(model) for key, model in self.models.items()}
        for key, override in self.variants[name].get("models", {}).items():
            if key not in models:
                raise BundleError(f"variant {name!r} of bundle {self.name!r} overrides an unknown model {key!r}")
            models[key].update(override)
        return replace(self, name=f"{self.name}-{name}", models=models, variants={})

    def fingerprint(self) -> str:
        """A hash of every file in the source folder: the recipe's cache key."""
        digest = hashlib.sha256()
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def run_recipe(self, out_dir: Path, progress: Callable[[str], None]) -> None:
        """Run the recipe's `build(out_dir, progress)`; a recipe that does not load is named with its line."""
        if self.recipe is None:
            return
        path = self.root / self.recipe
        module = _load_module(path, f"waystation_recipe_{self.name}")
        build = getattr(module, "build", None)
        if not callable(build):
            raise BundleError(f"{path}: a recipe must define build(out_dir, progress), which writes the bundle's "
                              "made files into out_dir")
        build(out_dir, progress=progress)


def _load_module(path: Path, name: str) -> ModuleType:
    import sys
    import traceback

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BundleError(f"cannot load recipe {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # a recipe may import its sibling modules (weights.py)
    try:
        spec.loader.exec_module(module)
    except (SyntaxError, ImportError, NameError, AttributeError) as exc:  # the mistakes of a script being written
        line = exc.lineno if isinstance(exc, SyntaxError) else next(
            (f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__)) if Path(f.filename) == path), None)
        where = f"{path}:{line}" if line else f"{path}"
        raise BundleError(f"{where}: {type(exc).__name__}: {exc.msg if isinstance(exc, SyntaxError) else exc} "
                          "(while importing the recipe)") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module
