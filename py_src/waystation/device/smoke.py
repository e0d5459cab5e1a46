"""The smoke check a new bundle version passes on the device before it becomes active.

Each model runs the sample input its manifest declares (or, when it declares none, each input
of its schema with symbolic axes as 1, filled with zeros), and what it answers must fit the
output schema the manifest declares: every output present, with its dtype, its rank, its fixed
sizes, and no NaN or infinity. The page runs it in a fresh worker on a staged version, and
moves the version pointers only when it passes; `waystation bundle check` runs it
on CPython.

    report = await smoke_check(app)   # {"classifier": {"ms": 0.4, "outputs": {"label": [1]}}}
"""

from __future__ import annotations

import math
import time
from typing import Any

from .errors import SmokeCheckError, WaystationError
from .manifest import ModelEntry
from .runtime import App
from .tensor import Tensor

__all__ = ["sample_feeds", "smoke_check"]


async def smoke_check(app: App) -> dict[str, Any]:
    """Run every model of `app` on its sample; SmokeCheckError on the first that fails."""
    report: dict[str, Any] = {}
    for name, model in app.models.items():
        entry = app.manifest.models[name]
        started = time.perf_counter()
        try:
            outputs = await model.run(sample_feeds(entry))
        except WaystationError as exc:
            raise SmokeCheckError(f"model {name!r} does not answer its sample input: {exc}") from exc
        for spec in entry.outputs:
            _check_output(name, spec, outputs.get(spec["name"]))
        report[name] = {"ms": (time.perf_counter() - started) * 1000,
                        "outputs": {k: list(t.shape) for k, t in outputs.items()}}
    return report


def sample_feeds(entry: ModelEntry) -> dict[str, Tensor]:
    """The tensors a model's smoke check feeds it."""
    specs = entry.sample or {
        i["name"]: {"dtype": i["dtype"], "shape": [d if isinstance(d, int) and d >= 0 else 1 for d in i["shape"]],
                    "fill": 0}
        for i in entry.inputs
    }
    try:
        return {name: Tensor(s["dtype"], [s["fill"]] * math.prod(s["shape"]), s["shape"]) for name, s in specs.items()}
    except WaystationError as exc:
        raise SmokeCheckError(f"model file {entry.file!r}: its sample input cannot be built: {exc}") from exc


def _check_output(model: str, spec: dict[str, Any], tensor: Tensor | None) -> None:
    where = f"model {model!r} output {spec['name']!r}"
    if tensor is None:
        raise SmokeCheckError(f"{where} is missing from its answer to the sample input")
    want = spec["shape"]
    if tensor.dtype != spec["dtype"]:
        raise SmokeCheckError(f"{where} is {tensor.dtype}, its schema says {spec['dtype']}")
    if len(tensor.shape) != len(want) or any(
        isinstance(w, int) and w >= 0 and w != got for w, got in zip(want, tensor.shape)
    ):
        raise SmokeCheckError(f"{where} has shape {list(tensor.shape)}, its schema says {want}")
    if tensor.dtype.startswith("float") and not all(math.isfinite(v) for v in tensor.data):
        raise SmokeCheckError(f"{where} holds NaN or infinity for the sample input")
