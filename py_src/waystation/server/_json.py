"""Strict JSON request bodies: anything odd is a clear 400, never a 500.

Python's `json` accepts what an API should not: NaN and Infinity, integers of thousands of
digits (whose conversion raises ValueError past 4,300), nesting up to the recursion limit
(RecursionError), duplicate keys (the last one silently wins) and lone surrogates in
strings (which raise UnicodeEncodeError later, wherever the string is encoded). This module
refuses all of them while parsing, with a message that names the problem.

    body = await json_object(request)                       # raises BadJSON
    user, password = fields(body, user=str, password=str)   # raises BadJSON
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

__all__ = ["BadJSON", "MAX_DEPTH", "MAX_NUMBER_CHARS", "fields", "json_object", "parse_object"]

MAX_DEPTH = 32  # nested arrays/objects; an API body needs a handful
MAX_NUMBER_CHARS = 40  # digits, sign, point and exponent of one number


class BadJSON(ValueError):
    """A request body that is not the JSON object an API expects; the message says why."""


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, parsed strictly."""
    return parse_object(await request.body())


def parse_object(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object: UTF-8, no NaN/Infinity, short numbers, shallow, no duplicate keys or lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJSON("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float,
                           object_pairs_hook=_object)
    except RecursionError:
        raise BadJSON(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BadJSON(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise BadJSON(f"the body must be a JSON object, not {_kind(value)}")
    _check(value)
    return value


def fields(body: dict[str, Any], **types: type) -> tuple[Any, ...]:
    """The values of the named keys of `body`, each checked to be of its type, in the order given."""
    values = []
    for name, kind in types.items():
        if name not in body:
            raise BadJSON(f"the body must have {name!r} ({_kind_name(kind)})")
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadJSON(f"{name!r} must be {_kind_name(kind)}, not {_kind(value)}")
        values.append(value)
    return tuple(values)


def _check(value: Any) -> None:
    """Walk `value` without recursion: depth, and strings that cannot be encoded."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadJSON(f"the body nests deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJSON("a string in the body holds a lone surrogate (\\ud800-\\udfff): not Unicode text") from None


def _constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadJSON(f"a number in the body has {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadJSON(f"a number in the body has {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadJSON(f"the number {text} is out of range")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise BadJSON(f"the key {duplicate!r} appears twice in one object")
    return result


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _kind_name(kind: type) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(kind, kind.__name__)
