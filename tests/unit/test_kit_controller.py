"""Workers and result handling with a real queue: controller-runtime's rules, metrics, failure isolation.

On virtual loop time (looptime): every retry happens exactly when the rate limiter (10 ms doubling,
capped at 50 ms here) or the Result says.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.kube.controller import Controller, Reconcile, ReportedError, Result, TerminalError
from dbaasctl.kube.ratelimit import ItemExponentialFailureRateLimiter

pytestmark = pytest.mark.looptime


def now() -> float:
    return asyncio.get_running_loop().time()


def offsets(times: list[float]) -> list[float]:
    # Loop time is kept at microsecond resolution; a step of it is not a delay the code chose.
    return [round(t - times[0], 4) for t in times]


def make(reconcile: Reconcile, registry: CollectorRegistry, **kw: object) -> Controller:
    kw.setdefault("rate_limiter", ItemExponentialFailureRateLimiter(0.01, 0.05))
    return Controller("things", reconcile, registry=registry, **kw)  # type: ignore[arg-type]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, {"controller": "things", **labels})
    return 0.0 if v is None else v


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_metrics_series_exist_before_the_first_reconcile() -> None:
    registry = CollectorRegistry()

    async def ok(key: str) -> None:
        return None

    make(ok, registry, workers=3)
    assert (
        registry.get_sample_value("controller_runtime_max_concurrent_reconciles", {"controller": "things"})
        == 3
    )
    assert registry.get_sample_value("controller_runtime_active_workers", {"controller": "things"}) == 0
    for result in ("success", "error", "requeue", "requeue_after"):
        assert (
            registry.get_sample_value(
                "controller_runtime_reconcile_total", {"controller": "things", "result": result}
            )
            == 0
        )


async def test_error_retries_with_backoff_until_success_then_forgets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    calls: list[str] = []
    times: list[float] = []

    async def flaky(key: str) -> None:
        calls.append(key)
        times.append(now())
        if len(calls) < 4:
            raise RuntimeError(f"attempt {len(calls)} failed")

    ctl = make(flaky, registry)
    ctl.start()
    ctl.enqueue("ns/a")
    with caplog.at_level(logging.ERROR):
        await wait_for(lambda: value(registry, "controller_runtime_reconcile_total", result="success") == 1)
    assert calls == ["ns/a"] * 4
    assert offsets(times) == [0, 0.01, 0.03, 0.07], "10 ms, then 20 ms, then 40 ms after each failure"
    assert value(registry, "controller_runtime_reconcile_errors_total") == 3
    assert value(registry, "controller_runtime_reconcile_total", result="error") == 3
    assert ctl.queue.num_requeues("ns/a") == 0, "success forgets the failure history"
    assert any("ns/a" in r.getMessage() and "attempt 1 failed" in r.getMessage() for r in caplog.records)
    await ctl.stop(1)


class _OwnReported(Exception):
    """A reconciler's own exception type, flagged without importing the kit's base class."""

    reported = True


@pytest.mark.parametrize("reported", [ReportedError, _OwnReported])
async def test_reported_failure_is_retried_but_logged_without_traceback(
    caplog: pytest.LogCaptureFixture, reported: type[Exception]
) -> None:
    registry = CollectorRegistry()
    calls = 0

    async def known(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            try:
                raise PermissionError("secrets is forbidden: databases/finalizers")
            except PermissionError:
                # Raised while handling, as the reconciler does: the log keeps the cause, not the stack.
                raise reported("ProcedureFailed: quota exceeded")  # noqa: B904
        if calls == 3:
            raise RuntimeError("unexpected bug")

    ctl = make(known, registry)
    ctl.start()
    with caplog.at_level(logging.DEBUG, logger="dbaasctl.kube.controller"):
        ctl.enqueue("ns/a")
        await wait_for(lambda: value(registry, "controller_runtime_reconcile_total", result="success") == 1)
    await ctl.stop(1)
    assert calls == 4
    assert value(registry, "controller_runtime_reconcile_errors_total") == 3
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    known_failures = [r for r in failures if "quota exceeded" in r.getMessage()]
    assert len(known_failures) == 2
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in known_failures)
    assert all(
        "from PermissionError: secrets is forbidden: databases/finalizers" in r.getMessage()
        for r in known_failures
    )
    (bug,) = [r for r in failures if "unexpected bug" in r.getMessage()]
    assert bug.levelno == logging.ERROR
    assert bug.exc_info is not None, "an unexpected exception keeps its traceback"


async def test_requeue_after_forgets_and_comes_back() -> None:
    registry = CollectorRegistry()
    times: list[float] = []

    async def periodic(key: str) -> Result:
        times.append(now())
        return Result(requeue_after=0.02)

    ctl = make(periodic, registry)
    ctl.queue.rate_limiter.when("ns/a")  # pretend earlier failures
    ctl.start()
    ctl.enqueue("ns/a")
    await wait_for(lambda: len(times) >= 3)
    assert offsets(times[:3]) == [0, 0.02, 0.04], "requeue_after is the delay, not the backoff"
    assert ctl.queue.num_requeues("ns/a") == 0
    assert value(registry, "controller_runtime_reconcile_total", result="requeue_after") >= 3
    await ctl.stop(1)


async def test_requeue_flag_is_rate_limited() -> None:
    registry = CollectorRegistry()
    times: list[float] = []

    async def again(key: str) -> Result:
        times.append(now())
        return Result(requeue=len(times) < 3)

    ctl = make(again, registry)
    ctl.start()
    ctl.enqueue("k")
    await wait_for(lambda: len(times) == 3 and not ctl.in_flight())
    assert offsets(times) == [0, 0.01, 0.03]
    assert value(registry, "controller_runtime_reconcile_total", result="requeue") == 2
    assert value(registry, "controller_runtime_reconcile_total", result="success") == 1
    await ctl.stop(1)


async def test_terminal_error_is_not_retried() -> None:
    registry = CollectorRegistry()
    calls = 0

    async def invalid(key: str) -> None:
        nonlocal calls
        calls += 1
        raise TerminalError("spec is invalid")

    ctl = make(invalid, registry)
    ctl.start()
    ctl.enqueue("k")
    await wait_for(lambda: value(registry, "controller_runtime_terminal_reconcile_errors_total") == 1)
    await asyncio.sleep(3600)
    assert calls == 1
    assert not ctl.queue.waiting()
    await ctl.stop(1)


async def test_timeout_counts_and_retries_and_worker_survives() -> None:
    registry = CollectorRegistry()
    times: list[float] = []

    async def slow_once(key: str) -> None:
        times.append(now())
        if len(times) == 1:
            await asyncio.sleep(10)

    ctl = make(slow_once, registry, workers=1, reconcile_timeout=0.05)
    ctl.start()
    ctl.enqueue("k")
    await wait_for(lambda: value(registry, "controller_runtime_reconcile_total", result="success") == 1)
    assert value(registry, "controller_runtime_reconcile_timeouts_total") == 1
    assert offsets(times) == [0, 0.06], "cut at 50 ms, retried 10 ms later"
    await ctl.stop(1)


async def test_exceptions_never_kill_workers_and_keys_never_run_concurrently() -> None:
    registry = CollectorRegistry()
    running: set[str] = set()
    overlaps = 0
    done: dict[str, int] = {}

    async def reconcile(key: str) -> None:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        try:
            await asyncio.sleep(0.001)
            done[key] = done.get(key, 0) + 1
            if done[key] % 3 == 0:
                raise ValueError("every third pass fails")
        finally:
            running.discard(key)

    ctl = make(reconcile, registry, workers=4)
    ctl.start()
    for round_ in range(30):
        for i in range(6):
            ctl.enqueue(f"k{i}")
        await asyncio.sleep(0.002 * (round_ % 3))
    await wait_for(lambda: not ctl.in_flight() and not len(ctl.queue) and not ctl.queue.waiting())
    assert overlaps == 0
    assert ctl.running, "all workers still alive after many exceptions"
    assert value(registry, "controller_runtime_active_workers") == 0
    await ctl.stop(1)
    assert not ctl.running


async def test_stop_drains_in_flight_then_cancels_stragglers() -> None:
    registry = CollectorRegistry()
    finished: list[str] = []
    cancelled: list[str] = []

    async def reconcile(key: str) -> None:
        try:
            await asyncio.sleep(0.05 if key == "quick" else 30)
            finished.append(key)
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    ctl = make(reconcile, registry, workers=2)
    ctl.start()
    ctl.enqueue("quick")
    ctl.enqueue("stuck")
    await wait_for(lambda: len(ctl.in_flight()) == 2)
    ctl.enqueue("never")  # queued, but a stopping controller takes no new work
    stopping_at = now()
    assert await ctl.stop(drain_timeout=0.3) is False
    assert round(now() - stopping_at, 4) == 0.3
    assert finished == ["quick"]
    assert cancelled == ["stuck"]
    assert not ctl.running
    assert value(registry, "controller_runtime_reconcile_total", result="error") == 0, "cancel is no error"
