"""`run_eagerly`: a workflow call driven by its caller, one awaited promise at a time, and handed
to the event loop only when it awaits something else."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from waystation.device._eager import JsPromise, JsPromiseError, Pending, run_eagerly

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="-")


async def _no_wait(x: int) -> int:
    return x * 2


async def _two_promises(a: object, b: object) -> list[object]:
    token = where.set("inside")
    first = await JsPromise(a)
    second = await JsPromise(b)
    seen = where.get()
    where.reset(token)  # raises if the steps ran in different contexts
    return [first, second, seen]


async def _model_fails(p: object) -> str:
    try:
        await JsPromise(p)
    except JsPromiseError as exc:
        return f"caught: {exc}"
    return "not reached"


def test_a_call_that_never_waits_returns_its_value_at_once() -> None:
    assert run_eagerly(_no_wait(21)) == 42  # no event loop exists here at all


def test_each_awaited_promise_is_handed_to_the_driver_and_the_call_resumes_with_its_value() -> None:
    first = run_eagerly(_two_promises("promise-a", "promise-b"))
    assert isinstance(first, Pending) and first.promise == "promise-a"
    second = first.resume(1)
    assert isinstance(second, Pending) and second.promise == "promise-b"
    assert second.resume(2) == [1, 2, "inside"]


def test_a_rejected_promise_is_raised_where_the_call_awaited_it() -> None:
    pending = run_eagerly(_model_fails("p"))
    assert pending.fail("out of memory") == "caught: out of memory"


def test_a_call_that_awaits_something_else_finishes_on_the_event_loop_in_one_context() -> None:
    async def waits() -> int:
        token = where.set("inside")
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        value = await JsPromise(_resolved(5))  # under the event loop, awaited as an awaitable
        where.reset(token)
        return value

    async def main() -> object:
        pending = run_eagerly(waits())
        assert isinstance(pending, asyncio.Future)
        return await pending

    assert asyncio.run(main()) == 5


def _resolved(value: int) -> asyncio.Future[int]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def test_awaited_outside_the_driver_a_js_promise_is_a_plain_awaitable() -> None:
    async def main() -> int:
        return await JsPromise(_resolved(7))

    assert asyncio.run(main()) == 7


def test_errors_after_a_wait_reach_the_caller() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("after a wait")

    async def main() -> None:
        await run_eagerly(fails())

    with pytest.raises(ValueError, match="after a wait"):
        asyncio.run(main())


def test_cancelling_the_future_cancels_the_call() -> None:
    finished = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            finished.append("cleaned up")

    async def main() -> None:
        pending = run_eagerly(slow())
        assert isinstance(pending, asyncio.Future)
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending

    asyncio.run(main())
    assert finished == ["cleaned up"]
