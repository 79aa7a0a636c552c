"""Work queue with client-go semantics: dedupe, never concurrent per key, never lost, delays, rate limits.

State (client-go `util/workqueue`): an ordered `queue`, a `dirty` set (needs processing) and a
`processing` set (handed to a worker, `done` not yet called). Every queued item is dirty and not being
processed. Hence:
- N adds before a worker picks a key up cost one reconcile (dedupe via `dirty`);
- a key is never handed to two workers at once (it is only re-queued by `done`);
- an add that arrives while the key is processed is parked in `dirty` and re-queued by `done`.

`add`, `done`, `forget`, `add_after` and `add_rate_limited` are plain methods, so informer handlers call
them without awaiting; `get` is the only coroutine. Asyncio is single-threaded and none of these methods
awaits, so no lock is needed. Delays use one heap and a single `loop.call_at` timer re-armed for the
earliest entry; for a key already waiting, the earlier ready time wins.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dbaasctl.kube.ratelimit import RateLimiter, default_controller_rate_limiter
from dbaasctl.observability import metrics as m
from dbaasctl.primitives.clock import loop_time

T = TypeVar("T", bound=Hashable)


class ShutDownError(Exception):
    """Raised by `get()` once the queue is shut down and empty of queued work."""


@dataclass
class _QueueMetrics:
    depth: Gauge
    adds: Counter
    queue_latency: Histogram
    work_duration: Histogram
    unfinished: Gauge
    longest_running: Gauge
    retries: Counter

    @classmethod
    def build(cls, name: str, registry: CollectorRegistry | None) -> _QueueMetrics:
        labels = ("name", "controller")
        values = {"name": name, "controller": name}

        def hist(metric: str, doc: str) -> Histogram:
            return m.histogram(metric, doc, labels, m.WORKQUEUE_BUCKETS, registry).labels(**values)

        return cls(
            depth=m.gauge("workqueue_depth", "Current depth of workqueue", labels, registry).labels(**values),
            adds=m.counter(
                "workqueue_adds_total", "Total number of adds handled by workqueue", labels, registry
            ).labels(**values),
            queue_latency=hist(
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
            ),
            work_duration=hist(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes",
            ),
            unfinished=m.gauge(
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been observed by "
                "work_duration. Large values indicate stuck threads.",
                labels,
                registry,
            ).labels(**values),
            longest_running=m.gauge(
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                labels,
                registry,
            ).labels(**values),
            retries=m.counter(
                "workqueue_retries_total", "Total number of retries handled by workqueue", labels, registry
            ).labels(**values),
        )


class WorkQueue(Generic[T]):
    """Rate-limited delaying work queue. Create it inside the running event loop that will use it."""

    def __init__(
        self,
        name: str,
        rate_limiter: RateLimiter[T] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.rate_limiter: RateLimiter[T] = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter()
        )
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._drained: asyncio.Event | None = None
        # Metrics bookkeeping: when an item became dirty, and when a worker took it.
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        # Delaying part: heap of (ready_at, seq, item); `_waiting` holds each item's live entry.
        self._heap: list[tuple[float, int, T]] = []
        self._waiting: dict[T, tuple[float, int]] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._metrics = _QueueMetrics.build(name, registry)
        self._metrics.unfinished.set_function(self._unfinished_seconds)
        self._metrics.longest_running.set_function(self._longest_running_seconds)

    # -- core queue -------------------------------------------------------------------------------

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._metrics.adds.inc()
        self._dirty.add(item)
        self._added_at[item] = loop_time()
        if item in self._processing:
            return
        self._queue.append(item)
        self._metrics.depth.inc()
        self._wake_one()

    async def get(self) -> T:
        """Next item to work on; the caller must call `done(item)` when finished (in a `finally`)."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDownError(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # We may have been woken for an item we will now not take: pass the wake-up on.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)
        item = self._queue.popleft()
        self._metrics.depth.dec()
        now = loop_time()
        added = self._added_at.pop(item, None)
        if added is not None:
            self._metrics.queue_latency.observe(now - added)
        self._started_at[item] = now
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        if item not in self._processing:
            return
        self._processing.discard(item)
        started = self._started_at.pop(item, None)
        if started is not None:
            self._metrics.work_duration.observe(loop_time() - started)
        if item in self._dirty:
            self._queue.append(item)
            self._metrics.depth.inc()
            self._wake_one()
        elif not self._processing and self._drained is not None:
            self._drained.set()

    def __len__(self) -> int:
        """Items waiting for a worker; informational only."""
        return len(self._queue)

    def processing(self) -> frozenset[T]:
        return frozenset(self._processing)

    def waiting(self) -> frozenset[T]:
        """Items scheduled by `add_after` / `add_rate_limited` that are not yet due."""
        return frozenset(self._waiting)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- delaying ---------------------------------------------------------------------------------

    def add_after(self, item: T, delay: float) -> None:
        if self._shutting_down:
            return
        # client-go counts every delayed add as a retry, even a zero delay.
        self._metrics.retries.inc()
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        current = self._waiting.get(item)
        if current is not None and current[0] <= ready_at:
            return
        seq = next(self._seq)
        self._waiting[item] = (ready_at, seq)
        heapq.heappush(self._heap, (ready_at, seq, item))
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._heap and self._waiting.get(self._heap[0][2]) != self._heap[0][:2]:
            heapq.heappop(self._heap)  # superseded by an earlier entry for the same item
        if not self._heap:
            self._cancel_timer()
            return
        head = self._heap[0][0]
        if self._timer is not None and self._timer_at is not None and self._timer_at <= head:
            return
        self._cancel_timer()
        self._timer_at = head
        self._timer = loop.call_at(head, self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._heap and self._heap[0][0] <= now:
            ready_at, seq, item = heapq.heappop(self._heap)
            if self._waiting.get(item) == (ready_at, seq):
                del self._waiting[item]
                self.add(item)
        self._arm(loop)

    # -- rate limiting ----------------------------------------------------------------------------

    def add_rate_limited(self, item: T) -> None:
        if self._shutting_down:
            return
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Clear the item's failure history (on success or when giving up); does not replace `done`."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    # -- shutdown ---------------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """Stop accepting adds, drop delayed items, wake every getter (they raise once the queue is empty).

        Items already queued are still handed out, like client-go; workers that must stop at once
        simply stop calling `get`.
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        self._cancel_timer()
        self._heap.clear()
        self._waiting.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no item is being processed; False if the timeout expired first."""
        if not self._processing:
            return True
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()
        try:
            async with asyncio.timeout(timeout):
                while self._processing:
                    await self._drained.wait()
                    self._drained.clear()
        except TimeoutError:
            return False
        return True

    async def shutdown(self, drain: bool = True, timeout: float | None = None) -> bool:
        """`shut_down()`, then (optionally) wait for in-flight items, like ShutDownWithDrain."""
        self.shut_down()
        if not drain:
            return True
        return await self.drain(timeout)

    # -- gauges computed at scrape time ---------------------------------------------------------

    def _unfinished_seconds(self) -> float:
        if self._shutting_down:
            return 0.0
        now = loop_time()
        return sum(now - t for t in self._started_at.values())

    def _longest_running_seconds(self) -> float:
        if self._shutting_down or not self._started_at:
            return 0.0
        return loop_time() - min(self._started_at.values())
