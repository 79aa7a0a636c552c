"""Streaming lists in the reflector against FakeKube, on virtual time: a server that does not serve them
(a 400, or a stream without the initial-events-end bookmark) makes the reflector fall back to LIST for
good, and the cache still ends equal to the server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dbaasctl.kube.cache import Backoff, Delta, ListWatch, Reflector, Store
from dbaasctl.kube.resources import CONFIGMAPS, JsonDict
from support.fakekube import FakeKube, status_error

pytestmark = pytest.mark.looptime


def cm(name: str) -> JsonDict:
    return {"metadata": {"name": name, "namespace": "ns"}, "data": {}}


async def _run(kube: FakeKube, act: object = None) -> tuple[Reflector, Store, list[Delta]]:
    seen: list[Delta] = []
    store = Store()
    reflector = Reflector(
        ListWatch(kube, CONFIGMAPS, namespace="ns"),
        store,
        seen.append,
        name="test",
        idle_timeout=80.0,
        watch_timeout=(300, 301),
        backoff=Backoff(rand=lambda: 0.0),
        watch_list=True,
    )
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 200)
        await kube.create(CONFIGMAPS.path("ns"), cm("c"))
        await asyncio.sleep(5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return reflector, store, seen


async def test_a_refused_streaming_list_falls_back_to_list() -> None:
    kube = FakeKube()
    for name in ("a", "b"):
        await kube.create(CONFIGMAPS.path("ns"), cm(name))
    kube.fail_next("watch", CONFIGMAPS, status_error(400, "BadRequest", "sendInitialEvents is not supported"))
    reflector, store, seen = await _run(kube)
    assert not reflector.watch_list
    assert reflector.health.lists == 1
    assert sorted(store.keys()) == ["ns/a", "ns/b", "ns/c"]
    assert [(d.type, d.key) for d in seen] == [("add", "ns/a"), ("add", "ns/b"), ("add", "ns/c")]
    watches = [c for c in kube.calls if c.verb == "watch"]
    assert watches[0].params.get("sendInitialEvents") == "true"
    assert all("sendInitialEvents" not in c.params for c in watches[1:])


async def test_a_stream_without_the_end_bookmark_falls_back_to_list() -> None:
    kube = FakeKube()
    for name in ("a", "b"):
        await kube.create(CONFIGMAPS.path("ns"), cm(name))
    reflector, store, seen = await _run(kube)
    # FakeKube does not stream initial state: it never sends the initial-events-end bookmark.
    assert not reflector.watch_list
    assert sorted(store.keys()) == ["ns/a", "ns/b", "ns/c"]
    assert sorted(d.key for d in seen) == ["ns/a", "ns/b", "ns/c"]
