"""Rate limiters: client-go's numbers, checked with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbaasctl.kube.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_exponential_sequence_is_5ms_doubling_capped_at_1000s() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("k") for _ in range(25)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655.36 s, the last step below the cap
    assert delays[18:] == [1000.0] * 7  # the 19th failure reaches the cap
    assert limiter.num_requeues("k") == 25


@given(
    failures=st.integers(min_value=0, max_value=3000), base=st.floats(1e-4, 1.0), cap=st.floats(1.0, 5000.0)
)
def test_exponential_delay_formula(failures: int, base: float, cap: float) -> None:
    limiter: ItemExponentialFailureRateLimiter[int] = ItemExponentialFailureRateLimiter(base, cap)
    for _ in range(failures):
        limiter.when(1)
    expected = cap if failures > 1023 else min(base * 2.0**failures, cap)
    assert limiter.when(1) == pytest.approx(expected)


def test_forget_resets_only_that_item() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    for _ in range(5):
        limiter.when("a")
        limiter.when("b")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.num_requeues("b") == 5


def test_max_of_takes_the_longest_and_forgets_everywhere() -> None:
    clock = FakeClock()
    limiter: MaxOfRateLimiter[str] = default_controller_rate_limiter(qps=10, burst=2, clock=clock)
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("b") == pytest.approx(0.005)
    # Bucket is empty now: the third retry waits for a token although its own backoff is 5 ms.
    assert limiter.when("c") == pytest.approx(0.1)
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_bucket_limiter_keeps_no_item_state() -> None:
    limiter: BucketRateLimiter[str] = BucketRateLimiter(qps=1, burst=1, clock=FakeClock())
    limiter.when("x")
    assert limiter.num_requeues("x") == 0


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ItemExponentialFailureRateLimiter(0, 1)
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter[str]()
