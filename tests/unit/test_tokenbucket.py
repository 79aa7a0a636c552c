"""The shared token bucket with a fake clock: reservations, the spam filter, rate and burst bounds."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbaasctl.primitives.tokenbucket import TokenBucket


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


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_burst_then_reservations_spread_at_qps() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    assert [bucket.reserve() for _ in range(100)] == [0.0] * 100
    # Reservations debit even while waiting: the 101st waits 0.1 s, the 1000th ~90 s.
    waits = [bucket.reserve() for _ in range(900)]
    assert waits[0] == pytest.approx(0.1)
    assert waits[-1] == pytest.approx(90.0)
    clock.advance(90.0)
    assert bucket.tokens() == pytest.approx(0.0, abs=1e-9)
    clock.advance(1000.0)  # refill stops at the burst size
    assert bucket.tokens() == pytest.approx(100.0)


def test_try_take_is_a_filter_not_a_reservation() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(rate=1 / 300, burst=2, clock=clock)
    assert bucket.try_take()
    assert bucket.try_take()
    assert not bucket.try_take()
    assert bucket.tokens() == pytest.approx(0.0)  # the refusal did not go into debt
    clock.advance(300)
    assert bucket.try_take()


@given(st.lists(st.floats(min_value=0.0, max_value=5.0), max_size=200))
def test_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(gaps: list[float]) -> None:
    clock = SteppedClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    start = clock.now
    admitted_at: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        admitted_at.append(clock.now + bucket.reserve())
    # Every prefix of admissions respects the bucket: k-th admission no earlier than (k - burst) / rate.
    for k, t in enumerate(sorted(admitted_at), start=1):
        assert t - start >= (k - 5) / 10 - 1e-9


def test_rate_zero_is_unlimited_and_negative_values_are_rejected() -> None:
    bucket = TokenBucket(0)
    assert bucket.unlimited
    assert [bucket.reserve() for _ in range(1000)] == [0.0] * 1000
    assert bucket.try_take()
    with pytest.raises(ValueError, match="negative"):
        TokenBucket(-1)
    with pytest.raises(ValueError, match="negative"):
        TokenBucket(1, -1)
