"""Run a coroutine without the event loop for as long as it does not need one.

A workflow call is a coroutine, but in the common case it never has to wait: on CPython a
model run is synchronous, and in the browser with JSPI a model run blocks on onnxruntime-web's
promise (`run_sync`). Driving the coroutine by hand then returns its result at once, without
the task hops an event loop costs per call. If it does wait on something (a state document,
`asyncio.sleep`), the rest of it runs on the event loop exactly as a task would have run it.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["run_eagerly"]

T = TypeVar("T")


def run_eagerly(coro: Coroutine[Any, Any, T]) -> T | asyncio.Future[T]:
    """The coroutine's result if it finishes without waiting, else a future of it.

    Every step runs in one context of its own, as a task's steps do, so context variables set
    before a wait are still there (and resettable) after it.
    """
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    return asyncio.ensure_future(_resume(coro, yielded, context))


async def _resume(coro: Coroutine[Any, Any, T], yielded: Any, context: contextvars.Context) -> T:
    # Hand each thing the coroutine yields to the task running this one, and send back what the
    # task answers: the same protocol asyncio's Task speaks with the coroutine itself.
    while True:
        try:
            answer = await _pass_through(yielded)
        except BaseException as exc:  # cancellation included: the coroutine decides
            try:
                yielded = context.run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = context.run(coro.send, answer)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


@types.coroutine
def _pass_through(yielded: Any) -> Generator[Any, Any, Any]:
    return (yield yielded)
