"""The one interface both hosts implement: load a model from bytes, run it on tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..tensor import Tensor

__all__ = ["Host", "HostSession", "TensorInfo"]


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: its name, dtype and shape (a str for a symbolic axis)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


class HostSession(Protocol):
    """A loaded model on one host."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    async def run(self, feeds: dict[str, Tensor], output_names: list[str]) -> dict[str, Tensor]: ...

    def close(self) -> None: ...


class Host(Protocol):
    """A model runtime: onnxruntime-web in the browser, onnxruntime on CPython."""

    name: str

    async def load_model(self, model: bytes | memoryview, *, label: str) -> HostSession: ...

    async def preloaded_model(self, path: str, *, label: str) -> HostSession | None:
        """A session the host already started for the model file at `path`, or None.

        The browser's worker starts sessions from the verified bytes while Python boots, so the
        model never passes through Python; the native host has none.
        """
        ...
