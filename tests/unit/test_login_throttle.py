"""The login throttle's arithmetic on a clock of our own: the delays, their cap, the exemption
of an owner's address, and the memory bound (the server-level behaviour: test_accounts.py)."""

from __future__ import annotations

import pytest

from waystation.server.sync.errors import RetryLater
from waystation.server.sync.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_after_the_free_failures_and_stop_at_the_cap() -> None:
    throttle = LoginThrottle(per_minute=0, free_failures=3, max_delay=60)
    assert [throttle.delay(n) for n in range(12)] == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert throttle.delay(10**6) == 60  # no overflow however long the attack


def test_an_account_waits_after_failures_then_the_right_password_is_tried() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_minute=0, free_failures=1, max_delay=5, clock=clock)
    waits = []
    for _ in range(10):  # an attacker failing whenever allowed
        throttle.check("10.0.0.1", "ada")
        throttle.failed("ada")
        try:
            throttle.check("10.0.0.1", "ada")
            waits.append(0.0)
        except RetryLater as refused:
            assert refused.status == 429 and "wait" in str(refused)
            waits.append(refused.retry_after)
            clock.now += refused.retry_after
    assert waits == [0, 1, 2, 4, 5, 5, 5, 5, 5, 5]
    throttle.failed("ada")  # the attacker's latest guess
    with pytest.raises(RetryLater):
        throttle.check("10.0.0.2", "ada")  # the owner on a new address waits too, at most the cap
    clock.now += 5
    throttle.check("10.0.0.2", "ada")  # never a lockout: the owner's try is let through after the cap
    throttle.succeeded("ada", "10.0.0.2")
    throttle.failed("ada")
    throttle.check("10.0.0.3", "ada")  # the success cleared the failures: the first one after is free


def test_an_address_that_logged_in_does_not_wait_for_other_addresses_failures() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_minute=0, free_failures=0, max_delay=60, clock=clock)
    throttle.succeeded("ada", "home")
    for _ in range(20):
        throttle.failed("ada")
    with pytest.raises(RetryLater):
        throttle.check("elsewhere", "ada")
    throttle.check("home", "ada")


def test_the_address_budget_refills_at_its_rate() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_minute=6, free_failures=5, max_delay=60, clock=clock)
    for _ in range(6):
        throttle.check("10.0.0.1")
    with pytest.raises(RetryLater) as refused:
        throttle.check("10.0.0.1")
    assert refused.value.retry_after == pytest.approx(10)
    throttle.check("10.0.0.2")  # another address has its own
    clock.now += 10
    throttle.check("10.0.0.1")


def test_memory_is_bounded_whatever_is_sent() -> None:
    throttle = LoginThrottle(per_minute=1000, free_failures=5, max_delay=60, max_entries=100)
    for i in range(10_000):
        throttle.check(f"10.0.{i // 256}.{i % 256}", f"user{i}")
        throttle.failed(f"user{i}")
    assert len(throttle._accounts) == 100 and len(throttle._addresses) == 100
