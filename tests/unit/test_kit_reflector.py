"""The reflector against FakeKube, table-driven, on virtual time: how each way a watch can end is handled.

Every scenario starts synced on two ConfigMaps (`ns/a`, `ns/b`) with an 80 s idle timeout, a 300 s
server timeout and an un-jittered 0.8 s backoff, then does something to the server and states exactly
what the reflector must deliver and when (seconds of loop time after the act), how often it listed and
watched, and that it ends at the server's resourceVersion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from dbaasctl.kube.cache import Backoff, DeletedFinalStateUnknown, Delta, ListWatch, Reflector, Store
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import CONFIGMAPS, JsonDict
from support.fakekube import Call, FakeKube, connection_reset, gone, status_error

pytestmark = pytest.mark.looptime

IDLE = 80.0


def cm(name: str, ns: str = "ns", **data: str) -> JsonDict:
    return {"metadata": {"name": name, "namespace": ns}, "data": dict(data)}


def too_many_requests(retry_after: float) -> ApiError:
    err = status_error(429, "TooManyRequests", "slow down")
    err.retry_after = retry_after
    return err


async def end_then_patch(kube: FakeKube, error: BaseException | None) -> None:
    kube.end_watches(error)
    await kube.patch(CONFIGMAPS.path("ns", "a"), {"data": {"v": "2"}})


async def gone_mid_stream(kube: FakeKube) -> None:
    await end_then_patch(kube, gone())


async def reset_mid_stream(kube: FakeKube) -> None:
    await end_then_patch(kube, connection_reset())


async def silent_stream(kube: FakeKube) -> None:
    kube.silence_watches()
    await kube.create(CONFIGMAPS.path("ns"), cm("c"))


async def bookmark_only_stream(kube: FakeKube) -> None:
    # Writes elsewhere move the server's resourceVersion; only a bookmark tells the watch about it.
    await kube.create(CONFIGMAPS.path("other"), cm("x", "other"))
    kube.bookmark()
    await asyncio.sleep(0)
    kube.compact()
    kube.end_watches()


async def deleted_while_deaf(kube: FakeKube) -> None:
    kube.silence_watches()
    await kube.delete(CONFIGMAPS.path("ns", "b"))
    kube.compact()


async def throttled_rewatch(kube: FakeKube) -> None:
    kube.fail_next("watch", CONFIGMAPS, too_many_requests(5.0))
    await end_then_patch(kube, None)


async def server_error_on_watch(kube: FakeKube) -> None:
    await end_then_patch(kube, status_error(500, "InternalError", "boom"))


@dataclass(frozen=True)
class Case:
    act: Callable[[FakeKube], object]
    #: (seconds after the act, delta type, key, is a tombstone)
    deltas: list[tuple[float, str, str, bool]]
    lists: int
    watches: int


CASES = {
    # 410 in the stream: relist after the backoff (the last list was under a second ago); the write the
    # dead watch missed comes out of the diff as an update.
    "410 mid-stream": Case(gone_mid_stream, [(0.8, "update", "ns/a", False)], lists=2, watches=2),
    # A connection reset is not a reason to relist: back off, re-watch from the same resourceVersion.
    "reset mid-stream": Case(reset_mid_stream, [(0.8, "update", "ns/a", False)], lists=1, watches=2),
    # Nothing arrives: the idle timeout ends the stream after exactly 80 s, the re-watch from the same
    # resourceVersion replays what was missed, without a relist.
    "silent stream": Case(silent_stream, [(IDLE, "add", "ns/c", False)], lists=1, watches=2),
    # Bookmarks alone advance the resourceVersion, so a re-watch after compaction needs no relist.
    "bookmark-only stream": Case(bookmark_only_stream, [], lists=1, watches=2),
    # Deleted while the stream was silent and history compacted: 410 on re-watch, relist, and the
    # deletion is delivered as a tombstone carrying the last state we knew.
    "relist with deletions": Case(deleted_while_deaf, [(IDLE, "delete", "ns/b", True)], lists=2, watches=3),
    # A watch closed at once with nothing delivered backs off (0.8 s) before re-watching; a 429 on
    # that re-watch waits its Retry-After (5 s), then re-watches without a relist.
    "429 on re-watch": Case(throttled_rewatch, [(5.8, "update", "ns/a", False)], lists=1, watches=3),
    # Any other API error may hide changes: back off and relist.
    "500 in the stream": Case(server_error_on_watch, [(0.8, "update", "ns/a", False)], lists=2, watches=2),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_reflector_recovers_each_way_a_watch_ends(case: Case) -> None:
    kube = FakeKube()
    await kube.create(CONFIGMAPS.path("ns"), cm("a", v="1"))
    await kube.create(CONFIGMAPS.path("ns"), cm("b"))
    loop = asyncio.get_running_loop()
    seen: list[tuple[float, Delta]] = []
    store = Store()
    reflector = Reflector(
        ListWatch(kube, CONFIGMAPS, namespace="ns"),
        store,
        lambda d: seen.append((loop.time(), d)),
        name="test",
        idle_timeout=IDLE,
        watch_timeout=(300, 301),
        backoff=Backoff(rand=lambda: 0.0),
    )
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 1)
        assert sorted(d.key for _, d in seen) == ["ns/a", "ns/b"]
        seen.clear()
        started = loop.time()
        await case.act(kube)  # type: ignore[misc]
        await asyncio.sleep(200)  # well past every delay above, short of the 300 s server timeout
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    got = [
        (round(t - started, 6), d.type, d.key, isinstance(d.new, DeletedFinalStateUnknown)) for t, d in seen
    ]
    assert got == case.deltas
    assert (reflector.health.lists, reflector.health.watches) == (case.lists, case.watches)
    assert reflector.resource_version == str(kube.resource_version)
    assert sorted(store.keys()) == [f"ns/{o['metadata']['name']}" for o in kube.objects(CONFIGMAPS, "ns")]


async def test_list_restarts_when_its_continue_token_expires_and_gives_up_after_four_tries() -> None:
    kube = FakeKube()
    for i in range(3):
        await kube.create(CONFIGMAPS.path("ns"), cm(f"c{i}"))
    source = ListWatch(kube, CONFIGMAPS, namespace="ns", page_size=1)
    expiries = 3

    async def expire_continue_tokens(call: Call) -> None:
        nonlocal expiries
        if call.verb == "list" and "continue" in call.params and expiries > 0:
            expiries -= 1
            raise gone("the provided continue parameter is too old")

    def first_pages() -> int:
        return sum(1 for c in kube.calls if c.verb == "list" and "continue" not in c.params)

    kube.hook = expire_continue_tokens
    items, rv = await source.list_all(lambda o: o)
    assert sorted(items) == ["ns/c0", "ns/c1", "ns/c2"]
    assert rv == str(kube.resource_version)
    assert first_pages() == 4
    expiries = 4
    with pytest.raises(ApiError) as err:
        await source.list_all(lambda o: o)
    assert err.value.is_gone
    assert first_pages() == 8
