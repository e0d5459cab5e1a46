"""Run a workflow call without the event loop: JS drives it instead, one promise at a time.

A workflow call is a coroutine, but what it waits on is nearly always a JS promise (a model
run in onnxruntime-web), or nothing at all (on CPython a model run is synchronous). Handing
that promise to an asyncio task costs task hops through Pyodide's event loop on every call. So
the worker drives the coroutine itself: `run_eagerly` runs it until it finishes or awaits a
`JsPromise`; then it returns a `Pending` whose promise JS awaits, and whose `resume(value)`
(or `fail(message)`) runs the coroutine on to its next wait. Between the two there are only
microtasks. Anything else the coroutine awaits (a state document, `asyncio.sleep`) hands the
rest of it to the event loop, exactly as a task would have run it.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["JsPromise", "JsPromiseError", "Pending", "run_eagerly"]

# True while a coroutine runs under run_eagerly's drive: JsPromise then yields itself to it.
_driven: contextvars.ContextVar[bool] = contextvars.ContextVar("waystation_driven", default=False)


class JsPromiseError(Exception):
    """A promise the driver awaited rejected: its message, as JS gave it."""


class JsPromise:
    """`await JsPromise(p)`: a JS promise's value, awaited by whoever drives the coroutine."""

    __slots__ = ("promise",)

    def __init__(self, promise: Any) -> None:
        self.promise = promise

    def __await__(self) -> Generator[Any, Any, Any]:
        if _driven.get():
            return (yield self)
        return (yield from self.promise.__await__())  # an asyncio task: Pyodide awaits it


class Pending:
    """A call waiting on `promise`: call `resume(value)` once it resolves, `fail(message)` if it rejects.

    Each returns the call's result, or the next Pending.
    """

    __slots__ = ("_context", "_coro", "promise")

    def __init__(self, coro: Coroutine[Any, Any, Any], promise: Any, context: contextvars.Context) -> None:
        self._coro = coro
        self._context = context
        self.promise = promise

    def resume(self, value: Any) -> Any:
        return _step(self._coro, self._context, self._coro.send, value)

    def fail(self, message: str) -> Any:
        return _step(self._coro, self._context, self._coro.throw, JsPromiseError(message))


def run_eagerly(coro: Coroutine[Any, Any, Any]) -> Any:
    """The coroutine's result if it finishes at once; a `Pending` if it awaits a JsPromise; else a future.

    Every step runs in one context of its own, as a task's steps do, so context variables set
    before a wait are still there (and resettable) after it.
    """
    context = contextvars.copy_context()
    context.run(_driven.set, True)
    return _step(coro, context, coro.send, None)


def _step(coro: Coroutine[Any, Any, Any], context: contextvars.Context, advance: Callable[[Any], Any], arg: Any) -> Any:
    try:
        yielded = context.run(advance, arg)
    except StopIteration as stop:
        return stop.value
    if isinstance(yielded, JsPromise):
        return Pending(coro, yielded.promise, context)
    return asyncio.ensure_future(_resume(coro, yielded, context))


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any, context: contextvars.Context) -> Any:
    # The rest of the call on the event loop: hand each thing the coroutine yields to the task
    # running this one, and send back what the task answers (asyncio's own protocol).
    advance: Callable[[Any], Any]
    while True:
        try:
            if isinstance(yielded, JsPromise):
                answer = await yielded.promise
            else:
                answer = await _pass_through(yielded)
        except BaseException as exc:  # cancellation included: the coroutine decides
            advance, arg = coro.throw, exc
        else:
            advance, arg = coro.send, answer
        try:
            yielded = context.run(advance, arg)
        except StopIteration as stop:
            return stop.value


@types.coroutine
def _pass_through(yielded: Any) -> Generator[Any, Any, Any]:
    return (yield yielded)
