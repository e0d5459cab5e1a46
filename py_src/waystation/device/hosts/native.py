"""The native host: onnxruntime on CPython. It is also the test host: it runs here for real."""

from __future__ import annotations

import re

from ..errors import ModelError
from ..tensor import Tensor
from .base import TensorInfo

__all__ = ["NativeHost"]

# onnxruntime reports types as "tensor(float)"; Waystation spells them as numpy/ORT-web do.
_ORT_TYPES = {
    "bool": "bool", "float16": "float16", "float": "float32", "double": "float64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
}


def _info(arg: object) -> TensorInfo:
    match = re.fullmatch(r"tensor\((\w+)\)", arg.type)  # type: ignore[attr-defined]
    dtype = _ORT_TYPES.get(match.group(1), match.group(1)) if match else arg.type  # type: ignore[attr-defined]
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape)  # type: ignore[attr-defined]
    return TensorInfo(arg.name, dtype, shape)  # type: ignore[attr-defined]


class NativeSession:
    def __init__(self, session: object, label: str) -> None:
        self._session = session
        self._label = label
        self.inputs = [_info(i) for i in session.get_inputs()]  # type: ignore[attr-defined]
        self.outputs = [_info(o) for o in session.get_outputs()]  # type: ignore[attr-defined]

    async def run(self, feeds: dict[str, Tensor], output_names: list[str]) -> dict[str, Tensor]:
        arrays = {name: t.numpy() for name, t in feeds.items()}
        try:
            results = self._session.run(output_names, arrays)  # type: ignore[attr-defined]
        except Exception as exc:
            raise ModelError(f"model {self._label!r} failed to run: {exc}") from exc
        return {name: _from_numpy(value) for name, value in zip(output_names, results)}

    def close(self) -> None:
        self._session = None


def _from_numpy(value: object) -> Tensor:
    import numpy as np

    arr = np.ascontiguousarray(value)
    return Tensor(str(arr.dtype), arr.reshape(-1), arr.shape)


class NativeHost:
    name = "native"

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads

    async def preloaded_model(self, path: str, *, label: str) -> NativeSession | None:
        return None

    async def load_model(self, model: bytes | memoryview, *, label: str) -> NativeSession:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = self._threads
        try:
            session = ort.InferenceSession(bytes(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"model {label!r} failed to load: {exc}") from exc
        return NativeSession(session, label)
