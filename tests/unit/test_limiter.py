"""Token bucket timing with a fake clock: N operations at rate r and burst b start no sooner than allowed."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbaasctl.dbms.limiter import TokenBucket


class FakeClock:
    """Time moves only when someone sleeps; sleeping wakes in deadline order."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        target = self.now + delay
        # let every other ready task reserve first, then jump to our deadline (never backwards)
        await asyncio.sleep(0)
        self.now = max(self.now, target)


async def _starts(bucket: TokenBucket, clock: FakeClock, n: int) -> list[float]:
    starts: list[float] = []
    for _ in range(n):
        await bucket.acquire()
        starts.append(clock())
    return starts


@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=10),
    n=st.integers(min_value=1, max_value=40),
)
@settings(max_examples=60, deadline=None)
def test_sequential_starts_respect_rate_and_burst(rate: float, burst: int, n: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    starts = asyncio.run(_starts(bucket, clock, n))
    for i, t in enumerate(starts):
        earliest = max(0.0, (i - burst + 1) / rate)
        assert t >= earliest - 1e-9, (i, t, earliest)
    # and it is not slower than needed: the bucket never idles while work waits
    assert starts[-1] <= max(0.0, (n - burst) / rate) + 1e-6


def test_concurrent_waiters_are_spaced() -> None:
    async def main() -> list[float]:
        clock = FakeClock()
        bucket = TokenBucket(2.0, 3, clock=clock, sleep=clock.sleep)
        starts: list[float] = []

        async def op() -> None:
            await bucket.acquire()
            starts.append(clock())

        await asyncio.gather(*(op() for _ in range(9)))
        return sorted(starts)

    starts = asyncio.run(main())
    assert starts[:3] == [0.0, 0.0, 0.0]
    # tokens 4..9 at 0.5 s spacing
    assert starts[3:] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_refill_caps_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, 2, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    clock.now = 100.0  # a long idle period must not bank more than `burst` tokens
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 1.0])


def test_zero_rate_is_unlimited_and_negative_refused() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
    assert all(bucket.reserve() == 0.0 for _ in range(10_000))
    with pytest.raises(ValueError, match="negative"):
        TokenBucket(-1)


def test_default_burst_and_reconfigure() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.5, clock=clock, sleep=clock.sleep)
    assert bucket.burst == 3
    bucket.configure(1.0, 1)
    assert bucket.burst == 1
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)


def test_cancelled_waiter_returns_its_token() -> None:
    async def main() -> float:
        clock = FakeClock()
        bucket = TokenBucket(1.0, 1, clock=clock, sleep=asyncio.sleep)
        await bucket.acquire()  # uses the burst token
        waiter = asyncio.create_task(bucket.acquire())  # would wait 1 s (real sleep, cancelled first)
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return bucket.reserve()  # the cancelled reservation was handed back: next waits 1 s, not 2 s

    assert asyncio.run(main()) == pytest.approx(1.0)
