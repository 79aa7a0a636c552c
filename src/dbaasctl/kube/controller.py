"""Workers that pull keys from a work queue and reconcile them, with controller-runtime's result rules.

| reconcile outcome                  | queue action                    | `result` label  |
|------------------------------------|---------------------------------|-----------------|
| raises (incl. timeout)             | `add_rate_limited` (no forget)  | `error`         |
| raises a `ReportedError`           | `add_rate_limited` (no forget)  | `error`         |
| raises `TerminalError`             | `forget`, no requeue            | `error`         |
| returns `Result(requeue_after=t)`  | `forget`, then `add_after(t)`   | `requeue_after` |
| returns `Result(requeue=True)`     | `add_rate_limited`              | `requeue`       |
| returns None / `Result()`          | `forget`                        | `success`       |
| returns `Result(failed=True, ...)` | as above; neither: `forget`     | `error`         |

An exception is logged with its key and counted; it never ends a worker. An unexpected one is logged at
ERROR with its traceback. One the reconciler raised on purpose after reporting it (status, Event), a
`ReportedError` or any exception whose class sets `reported = True`, is logged at INFO in one line, so
retries of a known failure do not flood the log with tracebacks; the line keeps the messages of the
exceptions it was raised from, which may name what the status leaves out (the API server's reason for a
403). Cancellation (shutdown, lost leadership) propagates untouched: it is neither an error nor a reason
to requeue. `done(key)` is always called, so a key can never get stuck in the processing set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from dbaasctl.kube.ratelimit import RateLimiter
from dbaasctl.kube.workqueue import ShutDownError, WorkQueue
from dbaasctl.observability import metrics as m
from dbaasctl.primitives.clock import loop_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next. `requeue_after` is the normal way to schedule a periodic check."""

    requeue_after: float | None = None
    requeue: bool = False
    #: The pass failed, and the reconciler already made it visible (status, Event): counted as an error
    #: like an exception, without one. With neither requeue nor requeue_after it is terminal (forget):
    #: only a change to an input brings the key back.
    failed: bool = False


class TerminalError(Exception):
    """A failure that retrying cannot fix (e.g. invalid spec): reported, counted, not requeued."""


class ReportedError(Exception):
    """A failure the reconciler has already made visible (status, Event): retried with backoff like any
    error, but logged without a traceback. A reconciler may instead set `reported = True` on its own
    exception class, so it need not import this one."""

    reported: ClassVar[bool] = True


def already_reported(exc: BaseException) -> bool:
    return getattr(exc, "reported", False) is True


def _causes(exc: BaseException) -> str:
    """The exceptions `exc` was raised from or while handling, in one line: a traceback's detail, minus
    the stack."""
    parts: list[str] = []
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None:
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if current is not None and id(current) not in seen:
            seen.add(id(current))
            parts.append(f"{type(current).__name__}: {current}")
        else:
            current = None
    return f" (from {'; from '.join(parts)})" if parts else ""


Reconcile = Callable[[str], Awaitable[Result | None]]

RESULTS = ("success", "error", "requeue", "requeue_after")


class _ControllerMetrics:
    def __init__(self, name: str, workers: int, registry: CollectorRegistry | None) -> None:
        label = ("controller",)

        def counter(metric: str, documentation: str) -> Counter:
            return m.counter(metric, documentation, label, registry).labels(controller=name)

        def gauge(metric: str, documentation: str) -> Gauge:
            return m.gauge(metric, documentation, label, registry).labels(controller=name)

        total = m.counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ("controller", "result"),
            registry,
        )
        self.results = {r: total.labels(controller=name, result=r) for r in RESULTS}
        self.errors = counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
        )
        self.terminal = counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
        )
        self.timeouts = counter(
            "controller_runtime_reconcile_timeouts_total",
            "Total number of reconciliation timeouts per controller",
        )
        self.time = m.histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            label,
            m.RECONCILE_BUCKETS,
            registry,
        ).labels(controller=name)
        self.max_concurrent = gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
        )
        self.active = gauge(
            "controller_runtime_active_workers", "Number of currently used workers per controller"
        )
        # Series exist from the first scrape, so rate() works before the first event (as c-r does).
        self.max_concurrent.set(workers)
        self.active.set(0)


class Controller:
    """A named queue plus N workers calling `reconcile(key)`. Handlers feed it with `enqueue(key)`."""

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 8,
        rate_limiter: RateLimiter[str] | None = None,
        reconcile_timeout: float | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("need at least one worker")
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.reconcile_timeout = reconcile_timeout
        self.queue: WorkQueue[str] = WorkQueue(name, rate_limiter, registry)
        self._metrics = _ControllerMetrics(name, workers, registry)
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: dict[str, float] = {}

    # -- feeding -------------------------------------------------------------------------------------

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def enqueue_after(self, key: str, delay: float) -> None:
        self.queue.add_after(key, delay)

    def enqueue_rate_limited(self, key: str) -> None:
        self.queue.add_rate_limited(key)

    # -- running -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def in_flight(self) -> dict[str, float]:
        """Keys being reconciled now → seconds since they started."""
        now = loop_time()
        return {k: now - t for k, t in self._in_flight.items()}

    def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(i), name=f"worker:{self.name}:{i}") for i in range(self.workers)
        ]
        log.info("controller %s: started %d workers", self.name, self.workers)

    async def stop(self, drain_timeout: float = 30.0) -> bool:
        """Take no more work, let in-flight reconciles finish for up to `drain_timeout`, then cancel.

        Returns True when everything finished within the budget.
        """
        self.queue.shut_down()
        finished = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=drain_timeout)
            finished = not pending
            if pending:
                log.warning(
                    "controller %s: %d reconciles still running after %.0fs; cancelling %s",
                    self.name,
                    len(self._in_flight),
                    drain_timeout,
                    sorted(self._in_flight),
                )
            await self._cancel()
        return finished

    async def abort(self) -> None:
        """Cancel every worker now (lost leadership: nothing guarded may keep running)."""
        self.queue.shut_down()
        await self._cancel()

    async def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._metrics.active.set(0)

    async def _worker(self, index: int) -> None:
        while True:
            # Once shut down, stop taking queued keys too: they are level-based and will be seen again.
            if self.queue.shutting_down:
                return
            try:
                key = await self.queue.get()
            except ShutDownError:
                return
            if self.queue.shutting_down:
                self.queue.done(key)
                return
            try:
                await self._process(key)
            finally:
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        started = loop_time()
        self._in_flight[key] = started
        self._metrics.active.inc()
        try:
            try:
                async with asyncio.timeout(self.reconcile_timeout):
                    result = await self.reconcile(key)
            except TimeoutError as exc:
                self._metrics.timeouts.inc()
                self._on_error(key, exc, timed_out=True)
                return
            except TerminalError as exc:
                self._metrics.terminal.inc()
                self._count_error()
                self.queue.forget(key)
                log.error("controller %s: %s failed permanently: %s", self.name, key, exc)
                return
            except Exception as exc:
                self._on_error(key, exc, timed_out=False)
                return
            self._on_result(key, result)
        finally:
            self._metrics.active.dec()
            self._in_flight.pop(key, None)
            self._metrics.time.observe(loop_time() - started)

    def _count_error(self) -> None:
        self._metrics.errors.inc()
        self._metrics.results["error"].inc()

    def _on_error(self, key: str, exc: BaseException, *, timed_out: bool) -> None:
        self._count_error()
        self.queue.add_rate_limited(key)
        retries = self.queue.num_requeues(key)
        extra = {"key": key, "controller": self.name}
        if timed_out:
            log.warning(
                "controller %s: reconcile of %s timed out after %ss (retry %d)",
                self.name,
                key,
                self.reconcile_timeout,
                retries,
                extra=extra,
            )
        elif already_reported(exc):
            log.info(
                "controller %s: reconcile of %s failed (retry %d): %s%s",
                self.name,
                key,
                retries,
                exc,
                _causes(exc),
                extra=extra,
            )
        else:
            log.error(
                "controller %s: reconcile of %s failed (retry %d): %s",
                self.name,
                key,
                retries,
                exc,
                exc_info=exc,
                extra=extra,
            )

    def _on_result(self, key: str, result: Result | None) -> None:
        if result is not None and result.failed:
            self._count_error()
            if result.requeue_after is not None and result.requeue_after > 0:
                self.queue.forget(key)
                self.queue.add_after(key, result.requeue_after)
            elif result.requeue:
                self.queue.add_rate_limited(key)
            else:
                self._metrics.terminal.inc()
                self.queue.forget(key)
            return
        if result is not None and result.requeue_after is not None and result.requeue_after > 0:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
            self._metrics.results["requeue_after"].inc()
        elif result is not None and result.requeue:
            self.queue.add_rate_limited(key)
            self._metrics.results["requeue"].inc()
        else:
            self.queue.forget(key)
            self._metrics.results["success"].inc()
