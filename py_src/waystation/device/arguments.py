"""A workflow call's arguments as JSON text, read the same way on every host.

The page's arguments reach Python as JSON text (the worker writes it) and so do
`waystation run`'s (inline, from a file or from stdin): both read it here. JSON has no NaN
or Infinity, and the browser's JSON.stringify would quietly turn them into null, so a
non-finite number is refused on both hosts alike, naming where it is:

    classify_features(): features[0][2]: expected a finite number, got NaN (JSON has no NaN or Infinity)

The worker writes the literals NaN, Infinity and -Infinity for such numbers (Python's json
reads them), so the page gets this very error instead of a null in its data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ArgumentError, mark_raised_by_workflow

__all__ = ["load_arguments", "non_finite_message", "result_json"]


# An exponent of three digits or more: the only way a JSON number can overflow to Infinity.
_EXPONENT = re.compile(r"[eE][+]?[0-9]{3}")


class _NonFinite(float):
    """A NaN or Infinity met while reading arguments, kept only to find where it was."""


def load_arguments(function: str, text: str, *, source: str = "arguments", typed: bool = False) -> Any:
    """Parse a call's JSON arguments; malformed JSON or a non-finite number is an ArgumentError.

    `source` names the text in the message ("--args", "args.json"). Reading costs one
    json.loads: the walk that finds a non-finite number runs only once one was seen. `typed`
    text (a person's, not JSON.stringify's) may also overflow, as 1e999 does: it is scanned
    for such exponents too (a regex pass, some 5 ms per MB).
    """
    seen: list[str] = []

    def constant(name: str) -> float:
        seen.append(name)
        return _NonFinite(name)

    def number(spelled: str) -> float:  # only when the text has an exponent of 3 digits: 1e999 is Infinity too
        value = float(spelled)
        if math.isfinite(value):
            return value
        seen.append(spelled)
        return _NonFinite(value)

    huge = typed and _EXPONENT.search(text) is not None
    try:
        value = json.loads(text, parse_constant=constant, parse_float=number if huge else None)
    except ValueError as exc:  # JSONDecodeError's message has the line and column
        raise ArgumentError(f"{function}(): {source} is not valid JSON: {exc}") from None
    if seen:
        path, bad = _first_non_finite(value, "args" if isinstance(value, list) else "")
        raise ArgumentError(f"{function}(): {non_finite_message(path, bad)}")
    return value


def result_json(function: str, reply: Any) -> str:
    """A call's reply as JSON text; a result JSON cannot carry (NaN, Infinity, an object) is the workflow's error.

    Both hosts refuse it alike (workflow-error, a ValueError naming the function), instead of the
    page getting null where CPython printed NaN.
    """
    try:
        return json.dumps(reply, allow_nan=False)
    except (TypeError, ValueError) as exc:
        error = ValueError(f"{function}(): the result is not JSON: {exc}")
        mark_raised_by_workflow(error, function)
        raise error from None


def non_finite_message(path: str, value: float) -> str:
    spelled = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    where = f"{path}: " if path else ""
    return f"{where}expected a finite number, got {spelled} (JSON has no NaN or Infinity)"


def _first_non_finite(value: Any, path: str) -> tuple[str, float]:
    todo: list[tuple[str, Any]] = [(path, value)]
    while todo:
        where, v = todo.pop()
        if isinstance(v, _NonFinite):
            return where, float(v)
        if isinstance(v, dict):
            # reversed, so that the stack pops the first key first: the path named is the first in the text
            todo.extend((f"{where}[{k!r}]" if where else k, x) for k, x in reversed(v.items()))
        elif isinstance(v, list):
            todo.extend((f"{where}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    raise AssertionError("a non-finite number was read but not found")  # pragma: no cover
