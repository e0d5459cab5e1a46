"""A host-neutral n-dimensional array: dtype, shape and one flat buffer.

`Tensor` is what workflow scripts hand to models and get back. It needs no numpy (Pyodide
here has none), wraps any buffer without copying, and converts to numpy when numpy exists:

    >>> t = Tensor("float32", [0.5, 1.5, 2.5, 3.5], shape=(2, 2))
    >>> t.shape, t.tolist()
    ((2, 2), [[0.5, 1.5], [2.5, 3.5]])
"""

from __future__ import annotations

import array
import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

from .errors import ArgumentError

__all__ = ["DTYPES", "Tensor"]

# dtype name (onnxruntime's spelling) -> struct format of one element.
DTYPES: dict[str, str] = {
    "bool": "?",
    "float16": "e",
    "float32": "f",
    "float64": "d",
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint8": "B",
    "uint16": "H",
    "uint32": "I",
    "uint64": "Q",
}
_ARRAY_TYPECODES = {"f", "d", "b", "h", "i", "q", "B", "H", "I", "Q"}


class Tensor:
    """An n-dimensional array of one dtype, held as a flat `memoryview`."""

    __slots__ = ("_data", "dtype", "shape")

    def __init__(self, dtype: str, data: Any, shape: Sequence[int] | None = None) -> None:
        if dtype not in DTYPES:
            raise ArgumentError(f"unsupported dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        self.dtype = dtype
        if isinstance(data, (list, tuple)):
            flat, inferred = _flatten(data)
            self._data = _pack(dtype, flat)
        else:
            self._data, inferred = _wrap_buffer(dtype, data)
        self.shape = tuple(int(d) for d in (inferred if shape is None else shape))
        if math.prod(self.shape) != len(self._data):
            raise ArgumentError(
                f"shape {self.shape} needs {math.prod(self.shape)} elements, data has {len(self._data)}"
            )

    @property
    def data(self) -> memoryview:
        """The flat elements, without a copy."""
        return self._data

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def reshape(self, shape: Sequence[int]) -> Tensor:
        """The same buffer seen with another shape (no copy)."""
        return Tensor(self.dtype, self._data, shape)

    def tolist(self) -> Any:
        """Nested Python lists, like `numpy.ndarray.tolist`."""
        flat: Any = self._data.tolist()
        for dim in reversed(self.shape[1:]):
            flat = [flat[i : i + dim] for i in range(0, len(flat), dim)]
        return flat if self.shape else flat[0]

    def numpy(self) -> Any:
        """A numpy view of the same memory (numpy must be installed)."""
        import numpy as np

        return np.frombuffer(self._data, dtype=self.dtype).reshape(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            return NotImplemented
        return (self.dtype, self.shape) == (other.dtype, other.shape) and self._data == other._data

    def __repr__(self) -> str:
        return f"Tensor(dtype={self.dtype!r}, shape={self.shape})"


def _flatten(data: Sequence[Any]) -> tuple[list[Any], tuple[int, ...]]:
    """Flatten nested sequences, checking that they are rectangular."""
    shape: list[int] = []
    level: Any = data
    while isinstance(level, (list, tuple)):
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    flat: list[Any] = list(data)
    for depth in range(1, len(shape)):
        nxt: list[Any] = []
        for row in flat:
            if not isinstance(row, (list, tuple)) or len(row) != shape[depth]:
                raise ArgumentError(f"ragged nested list: expected rows of length {shape[depth]} at depth {depth}")
            nxt.extend(row)
        flat = nxt
    return flat, tuple(shape)


def _pack(dtype: str, flat: Iterable[Any]) -> memoryview:
    fmt = DTYPES[dtype]
    try:
        if fmt in _ARRAY_TYPECODES:
            return memoryview(array.array(fmt, flat))
        if fmt == "?":
            return cast(memoryview, memoryview(bytes(bool(v) for v in flat)).cast("?"))
        import struct

        items = list(flat)
        return cast(memoryview, memoryview(struct.pack(f"<{len(items)}{fmt}", *items)).cast(fmt))  # type: ignore[call-overload]
    except (TypeError, OverflowError) as exc:
        raise ArgumentError(f"cannot store these values as {dtype}: {exc}") from None


def _wrap_buffer(dtype: str, data: Any) -> tuple[memoryview, tuple[int, ...]]:
    """View any C-contiguous buffer (bytes, array.array, numpy array) as flat `dtype`."""
    try:
        view = memoryview(data)
    except TypeError:
        raise ArgumentError(f"tensor data must be a list or a buffer, not {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ArgumentError("tensor data must be C-contiguous")
    shape = view.shape or ()
    fmt = DTYPES[dtype]
    if view.format not in ("B", "b", "c") and view.format.lstrip("<=@") != fmt:
        raise ArgumentError(f"buffer holds {view.format!r} elements, not {dtype}")
    if view.format in ("B", "b", "c") and fmt not in ("B", "b"):
        shape = (view.nbytes // _itemsize(fmt),)
    flat = view.cast("B")
    if flat.nbytes % _itemsize(fmt):
        raise ArgumentError(f"{flat.nbytes} bytes are not a whole number of {dtype} elements")
    return flat.cast(fmt), tuple(shape)  # type: ignore[call-overload]


def _itemsize(fmt: str) -> int:
    import struct

    return struct.calcsize(fmt)
