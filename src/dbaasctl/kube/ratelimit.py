"""Rate limiters for the work queue, with client-go's `util/workqueue` semantics and numbers.

A limiter answers "how long should this item wait before its next attempt?" (`when`), and remembers
per-item failures until `forget`. The controller default is the max of a per-item exponential backoff
(5 ms doubling to 1000 s) and an overall token bucket (10 qps, burst 100) applied to retries only.

The bucket is `dbaasctl.primitives.tokenbucket.TokenBucket`, used by *reservation*: every retry debits
one token even when it has to wait, so a storm of failures is spread out instead of all retrying at once.

All clocks are injectable monotonic functions, so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from dbaasctl.primitives.tokenbucket import Clock, TokenBucket

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[T_contra]):
    def when(self, item: T_contra) -> float:
        """Seconds to wait before the item's next attempt; records one more failure."""
        ...

    def forget(self, item: T_contra) -> None: ...

    def num_requeues(self, item: T_contra) -> int: ...


class ItemExponentialFailureRateLimiter(Generic[T]):
    """delay = base * 2**failures, capped at max_delay; failures counts previous `when` calls."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # 2**exp overflows float range long after the cap; stop computing it once it is moot.
        if exp > 1023:
            return self.max_delay
        return min(self.base_delay * 2.0**exp, self.max_delay)

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[T]):
    """Overall limiter for retries of all items; keeps no per-item state."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock = time.monotonic) -> None:
        self.bucket = TokenBucket(qps, burst, clock=clock)

    def when(self, item: T) -> float:
        return self.bucket.reserve()

    def forget(self, item: T) -> None:
        return None

    def num_requeues(self, item: T) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """Asks every child (each records the failure) and waits for the longest answer."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("need at least one limiter")
        self.limiters = limiters

    def when(self, item: T) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: T) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(
    base_delay: float = 0.005,
    max_delay: float = 1000.0,
    qps: float = 10.0,
    burst: int = 100,
    clock: Clock = time.monotonic,
) -> MaxOfRateLimiter[T]:
    """client-go's DefaultControllerRateLimiter, every number overridable."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter[T](base_delay, max_delay), BucketRateLimiter[T](qps, burst, clock)
    )
