"""`Model`: a loaded ONNX model that workflow scripts call with named tensors.

    >>> out = await ctx.models["classifier"].run({"input": Tensor("float32", pixels, (1, 64))})
    >>> out["probabilities"].tolist()
"""

from __future__ import annotations

from typing import Any

from .errors import ArgumentError
from .hosts import HostSession, TensorInfo
from .tensor import Tensor

__all__ = ["Model"]


class Model:
    """A model session on the active host, with its input and output schema."""

    def __init__(self, name: str, session: HostSession) -> None:
        self.name = name
        self._session = session
        self.inputs: dict[str, TensorInfo] = {i.name: i for i in session.inputs}
        self.outputs: dict[str, TensorInfo] = {o.name: o for o in session.outputs}

    async def run(self, feeds: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Tensor]:
        """Run the model on `feeds` ({input name: Tensor}); return {output name: Tensor}."""
        tensors = {name: self._check_input(name, value) for name, value in feeds.items()}
        missing = self.inputs.keys() - tensors.keys()
        if missing:
            raise ArgumentError(f"model {self.name!r} is missing inputs {sorted(missing)}")
        names = list(self.outputs) if outputs is None else outputs
        unknown = set(names) - self.outputs.keys()
        if unknown:
            raise ArgumentError(f"model {self.name!r} has no outputs {sorted(unknown)}; it has {list(self.outputs)}")
        return await self._session.run(tensors, names)

    def close(self) -> None:
        self._session.close()

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": [i.to_json() for i in self.inputs.values()],
            "outputs": [o.to_json() for o in self.outputs.values()],
        }

    def _check_input(self, name: str, value: Any) -> Tensor:
        info = self.inputs.get(name)
        if info is None:
            raise ArgumentError(f"model {self.name!r} has no input {name!r}; it takes {list(self.inputs)}")
        tensor = value if isinstance(value, Tensor) else _as_tensor(value, info.dtype)
        if tensor.dtype != info.dtype:
            raise ArgumentError(f"model {self.name!r} input {name!r} takes {info.dtype}, got {tensor.dtype}")
        if len(tensor.shape) != len(info.shape) or any(
            isinstance(want, int) and want >= 0 and want != got for want, got in zip(info.shape, tensor.shape)
        ):
            raise ArgumentError(
                f"model {self.name!r} input {name!r} takes shape {list(info.shape)}, got {list(tensor.shape)}"
            )
        return tensor


def _as_tensor(value: Any, dtype: str) -> Tensor:
    """Accept a numpy array where numpy exists; lists need an explicit Tensor (shape is ambiguous)."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return Tensor(str(value.dtype), value.reshape(-1) if value.ndim else value.reshape(1), value.shape)
    raise ArgumentError(f"model inputs must be Tensor objects, not {type(value).__name__}")
