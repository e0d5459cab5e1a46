"""`run_eagerly`: a workflow call without the event loop, and with it once the call really waits."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from waystation.device._eager import run_eagerly

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="-")


async def _no_wait(x: int) -> int:
    return x * 2


async def _waits(x: int) -> int:
    token = where.set("inside")
    await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    seen = where.get()
    where.reset(token)  # raises if the steps ran in different contexts
    return x + len(seen)


async def _fails_after_wait() -> None:
    await asyncio.sleep(0)
    raise ValueError("after a wait")


def test_a_call_that_never_waits_returns_its_value_at_once() -> None:
    assert run_eagerly(_no_wait(21)) == 42  # no event loop exists here at all


def test_a_call_that_waits_finishes_on_the_event_loop_in_one_context() -> None:
    async def main() -> object:
        pending = run_eagerly(_waits(1))
        assert isinstance(pending, asyncio.Future)
        return await pending

    assert asyncio.run(main()) == 1 + len("inside")


def test_errors_after_a_wait_reach_the_caller() -> None:
    async def main() -> None:
        await run_eagerly(_fails_after_wait())  # type: ignore[misc]

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
