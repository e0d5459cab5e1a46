"""Login throttling: per address and per account, in memory, never a lockout.

Two limits, checked before any password is hashed (a refused try costs the server nothing):

- each address has a budget of `per_minute` attempts a minute (a token bucket: bursts up to
  it, then one every 60/per_minute s), for every account together;
- each account may fail `free_failures` times; after that each try waits 1 s, 2 s, 4 s, ...
  after the last failure, capped at `max_delay`. It is a delay, not a lockout: the right
  password always works once the wait is over, and a success clears the failures.

An address that has logged in to an account since the server started does not wait for that
account's failures, so an attacker elsewhere cannot keep its owner out; it still has its
address budget. What an attacker from N addresses can do to one account: `free_failures`
guesses, then one guess per `max_delay` at most, whatever N is; and make its owner, on an
address that never logged in to it, wait up to `max_delay` before each try.

The state is bounded (`max_entries` accounts and addresses, least recently seen evicted), so
it costs a fixed amount of memory whatever an attacker sends; it is lost on restart.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import RetryLater

__all__ = ["LoginThrottle"]

_KNOWN_ADDRESSES = 8  # addresses remembered per account as having logged in to it


@dataclass
class _Account:
    failures: int = 0
    last_failure: float = 0.0
    known: list[str] = field(default_factory=list)  # addresses that logged in, newest last


@dataclass
class _Budget:
    tokens: float
    updated: float


class LoginThrottle:
    """Decides whether a login (or register, or password change) may be tried now."""

    def __init__(self, *, per_minute: int, free_failures: int, max_delay: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.free_failures, self.max_delay = per_minute, free_failures, max_delay
        self.max_entries = max_entries
        self._clock = clock
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._addresses: OrderedDict[str, _Budget] = OrderedDict()

    def check(self, address: str, user: str | None = None) -> None:
        """Take one attempt from `address`'s budget, and check `user`'s delay; raises RetryLater (429)."""
        now = self._clock()
        self._spend(address, now)
        if user is None:
            return
        wait = self._account_wait(user, address, now)
        if wait > 0:
            raise RetryLater(429, f"too many wrong passwords for {user!r}: wait {math.ceil(wait)} s before the "
                                  "next try", wait)

    def failed(self, user: str) -> None:
        account = self._account(user)
        account.failures += 1
        account.last_failure = self._clock()

    def succeeded(self, user: str, address: str) -> None:
        account = self._account(user)
        account.failures = 0
        if address in account.known:
            account.known.remove(address)
        account.known = [*account.known, address][-_KNOWN_ADDRESSES:]

    def delay(self, failures: int) -> float:
        """The wait after `failures` wrong passwords: 0 while free, then 1, 2, 4 ... s up to max_delay."""
        over = failures - self.free_failures
        return 0.0 if over <= 0 else min(self.max_delay, 2.0 ** min(over - 1, 62))

    def _account_wait(self, user: str, address: str, now: float) -> float:
        account = self._accounts.get(user)
        if account is None or address in account.known:
            return 0.0
        return account.last_failure + self.delay(account.failures) - now

    def _spend(self, address: str, now: float) -> None:
        if self.per_minute <= 0:
            return  # no address budget configured
        rate = self.per_minute / 60
        budget = self._addresses.pop(address, None) or _Budget(tokens=self.per_minute, updated=now)
        budget.tokens = min(self.per_minute, budget.tokens + (now - budget.updated) * rate)
        budget.updated = now
        self._remember(self._addresses, address, budget)
        if budget.tokens < 1:
            wait = (1 - budget.tokens) / rate
            raise RetryLater(429, f"too many attempts from this address ({self.per_minute} a minute): wait "
                                  f"{math.ceil(wait)} s", wait)
        budget.tokens -= 1

    def _account(self, user: str) -> _Account:
        account = self._accounts.pop(user, None) or _Account()
        self._remember(self._accounts, user, account)
        return account

    def _remember(self, entries: OrderedDict[str, _Account] | OrderedDict[str, _Budget], key: str,
                  value: _Account | _Budget) -> None:
        entries[key] = value  # type: ignore[assignment]
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
