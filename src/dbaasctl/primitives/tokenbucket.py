"""One token bucket for everything we throttle: work-queue retries, Event spam, DBMS operations.

Reservation style, like `golang.org/x/time/rate`'s `Reserve().Delay()`: `reserve()` debits one token at
once, possibly driving the balance negative, and returns how long the caller must wait for it. A storm
is spread out instead of all retrying at once, waiters are served in arrival order without a lock, and
a waiter that is cancelled hands its token back. `aiolimiter` and friends only offer "await until
admitted", which can express neither the work queue's "how long?" nor the cancel refund.

Clock and sleep are injectable, so the arithmetic is tested without real time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """Tokens accrue at `rate`/s up to `burst` (default: ceil(rate)); a rate of 0 means unlimited."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.rate = 0.0
        self.burst = 1
        self._tokens = 0.0
        self._last = clock()
        self.configure(rate, burst)
        self._tokens = float(self.burst)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def configure(self, rate: float, burst: int | None = None) -> None:
        """Change limits in place (config reload); the current balance is kept, capped to the new burst."""
        if rate < 0 or (burst is not None and burst < 0):
            raise ValueError("rate and burst must not be negative")
        self._advance()
        self.rate = float(rate)
        self.burst = max(1, burst if burst else math.ceil(rate))
        self._tokens = min(self._tokens, float(self.burst))

    def _advance(self) -> None:
        now = self._clock()
        if self.rate > 0 and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = max(self._last, now)

    def reserve(self) -> float:
        """Take one token; returns how long the caller must wait before using it (0 = now)."""
        if self.unlimited:
            return 0.0
        self._advance()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def cancel(self) -> None:
        """Give back a reserved token that will not be used."""
        if not self.unlimited:
            self._tokens = min(float(self.burst), self._tokens + 1.0)

    def try_take(self) -> bool:
        """Debit a token only if one is available now (a filter, not a reservation)."""
        if self.unlimited:
            return True
        self._advance()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def tokens(self) -> float:
        """Current balance (negative while reservations are outstanding)."""
        self._advance()
        return self._tokens

    async def acquire(self) -> float:
        """Wait for a token; returns the time waited. Cancelled while waiting, the token goes back."""
        delay = self.reserve()
        if delay > 0:
            try:
                await self._sleep(delay)
            except asyncio.CancelledError:
                self.cancel()
                raise
        return delay
