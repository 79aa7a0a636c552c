"""Work queue invariants: dedupe, never concurrent per key, never lost, delays, rate limits, shutdown.

Async tests run on virtual loop time (looptime): delays are asserted exactly as the queue promises them.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from dbaasctl.kube.ratelimit import ItemExponentialFailureRateLimiter
from dbaasctl.kube.workqueue import ShutDownError, WorkQueue

pytestmark = pytest.mark.looptime


def elapsed_since(start: float) -> float:
    return round(asyncio.get_running_loop().time() - start, 6)


def new_queue(name: str = "q", registry: CollectorRegistry | None = None, **kw: object) -> WorkQueue[str]:
    return WorkQueue(name, registry=registry or CollectorRegistry(), **kw)  # type: ignore[arg-type]


async def test_dedupes_adds_before_a_worker_takes_the_key() -> None:
    registry = CollectorRegistry()
    q = new_queue(registry=registry)
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    labels = {"name": "q", "controller": "q"}
    assert registry.get_sample_value("workqueue_adds_total", labels) == 3
    assert registry.get_sample_value("workqueue_depth", labels) == 0


async def test_add_while_processing_is_parked_and_requeued_on_done() -> None:
    q = new_queue()
    q.add("k")
    key = await q.get()
    q.add("k")  # changed while being worked on
    assert len(q) == 0, "must not be handed to a second worker"
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.done(key)
    assert await asyncio.wait_for(getter, 1) == "k"


async def test_done_without_new_add_does_not_requeue() -> None:
    q = new_queue()
    q.add("k")
    q.done(await q.get())
    assert len(q) == 0


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "get", "done"]), st.sampled_from("abcd")), max_size=60))
def test_model_invariants_hold_for_any_interleaving(ops: list[tuple[str, str]]) -> None:
    """Against a reference model: queue ⊆ dirty, queue ∩ processing = ∅, no duplicates, nothing lost."""

    async def scenario() -> None:
        q = new_queue()
        held: set[str] = set()  # keys a (simulated) worker holds
        pending: set[str] = set()  # keys added since they were last handed out
        for op, key in ops:
            if op == "add":
                q.add(key)
                pending.add(key)
            elif op == "get" and len(q):
                got = await q.get()
                assert got not in held, "a key was handed out twice concurrently"
                held.add(got)
                pending.discard(got)
            elif op == "done" and key in held:
                q.done(key)
                held.discard(key)
            queued = list(q._queue)
            assert len(queued) == len(set(queued))
            assert set(queued) <= q._dirty
            assert not set(queued) & q._processing
            assert q._processing == held
        # Drain: every key added since it was last taken must come out again.
        for key in list(held):
            q.done(key)
        seen: set[str] = set()
        while len(q):
            got = await q.get()
            seen.add(got)
            q.done(got)
        assert pending <= seen

    asyncio.run(scenario())


async def test_concurrent_workers_never_overlap_on_a_key_and_lose_no_add() -> None:
    q = new_queue()
    rng = random.Random(7)
    active: set[str] = set()
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}
    clock = 0
    overlaps = 0

    async def worker() -> None:
        nonlocal clock, overlaps
        while True:
            try:
                key = await q.get()
            except ShutDownError:
                return
            clock += 1
            last_start[key] = clock
            if key in active:
                overlaps += 1
            active.add(key)
            await asyncio.sleep(rng.random() / 500)
            active.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for _ in range(2000):
        key = f"k{rng.randrange(12)}"
        clock += 1
        last_add[key] = clock
        q.add(key)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    assert await q.shutdown(drain=False)
    # Let the workers drain what is queued (shut_down still hands out queued items).
    await asyncio.wait_for(asyncio.gather(*workers), 10)
    assert overlaps == 0
    for key, added in last_add.items():
        assert last_start[key] > added, f"add of {key} at {added} was never processed"


async def test_add_after_fires_once_and_earliest_wins() -> None:
    q = new_queue()
    start = asyncio.get_running_loop().time()
    q.add_after("k", 5.0)
    q.add_after("k", 0.05)  # the earlier add_after wins
    q.add_after("k", 3.0)  # a later one is ignored
    assert q.waiting() == {"k"}
    assert await q.get() == "k"
    assert elapsed_since(start) == 0.05
    q.done("k")
    assert not q.waiting()
    await asyncio.sleep(10)  # past both superseded deadlines: neither fires
    assert len(q) == 0


async def test_add_after_zero_or_negative_is_a_plain_add() -> None:
    registry = CollectorRegistry()
    q = new_queue(registry=registry)
    q.add_after("k", 0)
    assert len(q) == 1
    assert registry.get_sample_value("workqueue_retries_total", {"name": "q", "controller": "q"}) == 1


async def test_delayed_items_come_out_in_ready_order() -> None:
    q = new_queue()
    start = asyncio.get_running_loop().time()
    q.add_after("late", 0.15)
    q.add_after("early", 0.05)
    q.add_after("mid", 0.1)
    got = [(await q.get(), elapsed_since(start)) for _ in range(3)]
    assert got == [("early", 0.05), ("mid", 0.1), ("late", 0.15)]


async def test_rate_limited_adds_back_off_per_item_and_forget_resets() -> None:
    q = WorkQueue[str]("rl", ItemExponentialFailureRateLimiter(0.02, 10.0), CollectorRegistry())
    loop = asyncio.get_running_loop()
    started = loop.time()
    q.add_rate_limited("k")  # 20 ms
    q.add_rate_limited("k")  # 40 ms, but the earlier entry wins
    assert q.num_requeues("k") == 2
    assert await q.get() == "k"
    assert elapsed_since(started) == 0.02
    q.done("k")
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")  # forgotten: back to the base delay
    assert await q.get() == "k"
    assert elapsed_since(started) == 0.04


async def test_get_raises_after_shutdown_once_empty() -> None:
    q = new_queue()
    waiter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.shut_down()
    with pytest.raises(ShutDownError):
        await asyncio.wait_for(waiter, 1)
    q.add("x")  # ignored after shutdown
    assert len(q) == 0
    q.add_after("y", 0.01)
    assert not q.waiting()


async def test_shutdown_with_drain_waits_for_in_flight_items() -> None:
    q = new_queue()
    q.add("k")
    key = await q.get()
    start = asyncio.get_running_loop().time()
    stopping = asyncio.ensure_future(q.shutdown(drain=True, timeout=5))
    await asyncio.sleep(4)
    assert not stopping.done()
    q.done(key)
    assert await stopping is True
    assert elapsed_since(start) == 4


async def test_drain_times_out_when_a_worker_hangs() -> None:
    q = new_queue()
    q.add("k")
    await q.get()
    start = asyncio.get_running_loop().time()
    assert await q.shutdown(drain=True, timeout=0.05) is False
    assert elapsed_since(start) == 0.05


async def test_cancelled_getter_passes_its_wakeup_on() -> None:
    q = new_queue()
    first = asyncio.ensure_future(q.get())
    second = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.add("k")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it can take the item
    assert await asyncio.wait_for(second, 1) == "k"


async def test_metrics_track_processing_time() -> None:
    registry = CollectorRegistry()
    q = new_queue("m", registry=registry)
    labels = {"name": "m", "controller": "m"}
    q.add("k")
    await q.get()
    await asyncio.sleep(0.05)
    assert registry.get_sample_value("workqueue_unfinished_work_seconds", labels) == pytest.approx(0.05)
    assert registry.get_sample_value("workqueue_longest_running_processor_seconds", labels) == pytest.approx(
        0.05
    )
    q.done("k")
    assert registry.get_sample_value("workqueue_unfinished_work_seconds", labels) == 0
    assert registry.get_sample_value("workqueue_work_duration_seconds_count", labels) == 1
    assert registry.get_sample_value("workqueue_queue_duration_seconds_count", labels) == 1
    # The workqueue histograms use controller-runtime's buckets: 1e-8 ... 1e3.
    assert registry.get_sample_value("workqueue_work_duration_seconds_bucket", {**labels, "le": "1e-08"}) == 0
    assert (
        registry.get_sample_value("workqueue_work_duration_seconds_bucket", {**labels, "le": "1000.0"}) == 1
    )
