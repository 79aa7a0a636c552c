"""Bounded polling for tests and the test bed: wait for a condition within a generous timeout.

Tests never assert on timing and never sleep a fixed time hoping something happened; they poll until the
condition holds and fail only after a bound far above what a healthy run needs. One loop, in a blocking
form (`poll`, for kubectl-driven tests) and an async one (`poll_async`, whose predicate may be a
coroutine), plus the two ways tests use the outcome: `wait_until` raises, `eventually` returns a bool.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def poll(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.5) -> T | None:
    """Call `predicate` until it returns something truthy and return that; None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


async def poll_async(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 60.0, interval: float = 0.1
) -> T | None:
    """`poll` inside an event loop; the predicate may return an awaitable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            return None
        await asyncio.sleep(interval)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll until true, else fail the test naming `what`."""
    if not await poll_async(predicate, timeout, interval):
        raise AssertionError(f"timed out after {timeout}s waiting for: {what}")


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 60.0, interval: float = 0.1
) -> bool:
    """Poll until true; False after `timeout`, for `assert await eventually(...)`."""
    return bool(await poll_async(check, timeout, interval))
