"""FakeKube keeps the API-server semantics the kit and the reconciler rely on; these pin them down."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiohttp
import pytest

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import ApiError, WatchIdleTimeout
from dbaasctl.kube.resources import CONFIGMAPS, NAMESPACES, SECRETS, JsonDict, ResourceRef
from support.fakekube import FakeKube, conflict, connection_reset, server_error

DATABASES = ResourceRef("dbaasctl.io", "v1", "databases", kind="Database")


def db(name: str, **spec: Any) -> JsonDict:
    return {"metadata": {"name": name}, "spec": dict(spec), "status": {"phase": "ignored"}}


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> JsonDict:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": dict(data)}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube([DATABASES], status_subresources=[DATABASES])


def rv(obj: JsonDict) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def collect(stream: Any, n: int) -> list[JsonDict]:
    return [await anext(stream) for _ in range(n)]


@pytest.mark.parametrize("method", ["get", "list", "create", "replace", "patch", "delete", "watch", "close"])
def test_every_protocol_method_has_the_protocol_signature(method: str) -> None:
    wanted = inspect.signature(getattr(KubeApi, method))
    got = inspect.signature(getattr(FakeKube, method))
    assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == [
        (p.name, p.kind, p.default) for p in wanted.parameters.values()
    ]
    assert inspect.iscoroutinefunction(getattr(FakeKube, method)) == (method != "watch")


async def test_one_global_resource_version_bumped_per_write_and_not_by_noops(kube: FakeKube) -> None:
    a = await kube.create(CONFIGMAPS.path("ns"), cm("a", x="1"))
    s = await kube.create(SECRETS.path("ns"), {"metadata": {"name": "s"}})
    assert (rv(a), rv(s)) == (1, 2)
    same = await kube.patch(CONFIGMAPS.path("ns", "a"), {"data": {"x": "1"}})
    assert rv(same) == 1
    assert kube.resource_version == 2
    changed = await kube.patch(CONFIGMAPS.path("ns", "a"), {"data": {"x": "2"}})
    assert rv(changed) == 3
    assert changed["metadata"]["uid"] == a["metadata"]["uid"]


async def test_create_drops_status_and_generation_follows_spec_only(kube: FakeKube) -> None:
    created = await kube.create(DATABASES.path("ns"), db("d", endpoint="pg"))
    assert "status" not in created
    assert created["metadata"]["generation"] == 1
    labelled = await kube.patch(DATABASES.path("ns", "d"), {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    assert rv(labelled) > rv(created)
    respec = await kube.patch(DATABASES.path("ns", "d"), {"spec": {"endpoint": "my"}})
    assert respec["metadata"]["generation"] == 2


async def test_status_subresource_splits_spec_and_status_writes(kube: FakeKube) -> None:
    await kube.create(DATABASES.path("ns"), db("d", endpoint="pg"))
    main = await kube.patch(DATABASES.path("ns", "d"), {"status": {"phase": "x"}, "spec": {"endpoint": "e"}})
    assert "status" not in main
    assert main["spec"] == {"endpoint": "e"}
    status = await kube.patch(
        DATABASES.path("ns", "d", "status"), {"status": {"phase": "Ready"}, "spec": {"endpoint": "z"}}
    )
    assert status["status"] == {"phase": "Ready"}
    assert status["spec"] == {"endpoint": "e"}
    assert status["metadata"]["generation"] == main["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as err:
        await kube.patch(CONFIGMAPS.path("ns", "d", "status"), {"status": {}})
    assert err.value.is_not_found


async def test_stale_resource_version_is_a_conflict_on_patch_replace_and_delete(kube: FakeKube) -> None:
    first = await kube.create(CONFIGMAPS.path("ns"), cm("a"))
    await kube.patch(CONFIGMAPS.path("ns", "a"), {"data": {"x": "1"}})
    stale = {"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]}, "data": {"y": "2"}}
    for call in (
        kube.patch(CONFIGMAPS.path("ns", "a"), stale),
        kube.replace(CONFIGMAPS.path("ns", "a"), {**cm("a"), **stale}),
        kube.delete(CONFIGMAPS.path("ns", "a"), preconditions={"resourceVersion": "1"}),
        kube.delete(CONFIGMAPS.path("ns", "a"), preconditions={"uid": "other"}),
    ):
        with pytest.raises(ApiError) as err:
            await call
        assert err.value.is_conflict
        assert not err.value.is_already_exists
    assert kube.read(CONFIGMAPS, "ns", "a") is not None


async def test_not_found_and_already_exists(kube: FakeKube) -> None:
    with pytest.raises(ApiError) as err:
        await kube.get(SECRETS.path("ns", "nope"))
    assert err.value.is_not_found
    await kube.create(SECRETS.path("ns"), {"metadata": {"name": "s"}})
    with pytest.raises(ApiError) as err:
        await kube.create(SECRETS.path("ns"), {"metadata": {"name": "s"}})
    assert err.value.is_already_exists


async def test_delete_with_finalizers_marks_then_removes_when_they_are_gone(kube: FakeKube) -> None:
    await kube.create(DATABASES.path("ns"), {**db("d"), "metadata": {"name": "d", "finalizers": ["f/x"]}})
    marked = await kube.delete(DATABASES.path("ns", "d"))
    assert marked["metadata"]["deletionTimestamp"]
    assert (await kube.get(DATABASES.path("ns", "d")))["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as err:
        await kube.patch(DATABASES.path("ns", "d"), {"metadata": {"finalizers": ["f/x", "f/y"]}})
    assert err.value.is_invalid
    await kube.patch(DATABASES.path("ns", "d"), {"metadata": {"finalizers": None}})
    assert kube.read(DATABASES, "ns", "d") is None


async def test_json_patch_with_a_failing_test_op_changes_nothing(kube: FakeKube) -> None:
    await kube.create(CONFIGMAPS.path("ns"), cm("a", x="1"))
    ops = [
        {"op": "test", "path": "/data/x", "value": "2"},
        {"op": "replace", "path": "/data/x", "value": "3"},
    ]
    with pytest.raises(ApiError) as err:
        await kube.patch(CONFIGMAPS.path("ns", "a"), ops, "json")
    assert err.value.is_invalid
    ops[0]["value"] = "1"
    done = await kube.patch(CONFIGMAPS.path("ns", "a"), ops, "json")
    assert done["data"] == {"x": "3"}


async def test_list_filters_by_namespace_and_selectors_and_pages_from_one_snapshot(kube: FakeKube) -> None:
    for i in range(5):
        await kube.create(CONFIGMAPS.path("a"), cm(f"c{i}", {"app": "x" if i % 2 else "y", "tier": "t"}))
    await kube.create(CONFIGMAPS.path("b"), cm("other", {"app": "x"}))
    names = lambda page: [o["metadata"]["name"] for o in page["items"]]  # noqa: E731
    assert names(await kube.list(CONFIGMAPS.path("a"), {"labelSelector": "app=x"})) == ["c1", "c3"]
    assert names(await kube.list(CONFIGMAPS.path(), {"labelSelector": "app in (x),tier"})) == ["c1", "c3"]
    assert len((await kube.list(CONFIGMAPS.path(), {"labelSelector": "app!=x"}))["items"]) == 3
    assert names(await kube.list(CONFIGMAPS.path(), {"fieldSelector": "metadata.namespace=b"})) == ["other"]
    first = await kube.list(CONFIGMAPS.path("a"), {"limit": 2})
    await kube.create(CONFIGMAPS.path("a"), cm("c9"))  # after the snapshot: not in later pages
    second = await kube.list(CONFIGMAPS.path("a"), {"limit": 2, "continue": first["metadata"]["continue"]})
    third = await kube.list(CONFIGMAPS.path("a"), {"limit": 2, "continue": second["metadata"]["continue"]})
    assert names(first) + names(second) + names(third) == [f"c{i}" for i in range(5)]
    assert "continue" not in third["metadata"]
    assert third["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_an_expired_continue_token_is_gone(kube: FakeKube) -> None:
    for i in range(3):
        await kube.create(CONFIGMAPS.path("a"), cm(f"c{i}"))
    first = await kube.list(CONFIGMAPS.path("a"), {"limit": 1})
    await kube.create(CONFIGMAPS.path("a"), cm("later"))
    kube.compact()
    with pytest.raises(ApiError) as err:
        await kube.list(CONFIGMAPS.path("a"), {"limit": 1, "continue": first["metadata"]["continue"]})
    assert err.value.is_gone


async def test_watch_replays_history_after_the_resource_version_then_goes_live(kube: FakeKube) -> None:
    await kube.create(CONFIGMAPS.path("a"), cm("one"))
    start = kube.resource_version
    await kube.patch(CONFIGMAPS.path("a", "one"), {"data": {"k": "v"}})
    await kube.create(CONFIGMAPS.path("b"), cm("elsewhere"))
    async with kube.watch(CONFIGMAPS.path("a"), {"resourceVersion": str(start)}) as stream:
        (modified,) = await collect(stream, 1)
        await kube.delete(CONFIGMAPS.path("a", "one"))
        (deleted,) = await collect(stream, 1)
    assert modified["type"] == "MODIFIED"
    assert modified["object"]["data"] == {"k": "v"}
    assert deleted["type"] == "DELETED"
    assert rv(deleted["object"]) == kube.resource_version
    assert kube.open_watches == 0


async def test_watch_with_a_label_selector_sees_only_matching_objects(kube: FakeKube) -> None:
    async with kube.watch(CONFIGMAPS.path(), {"resourceVersion": "1", "labelSelector": "mine"}) as stream:
        await kube.create(CONFIGMAPS.path("a"), cm("theirs"))
        await kube.create(CONFIGMAPS.path("a"), cm("ours", {"mine": ""}))
        (event,) = await collect(stream, 1)
    assert event["object"]["metadata"]["name"] == "ours"


async def test_watch_from_a_compacted_resource_version_is_410(kube: FakeKube) -> None:
    await kube.create(CONFIGMAPS.path("a"), cm("one"))
    await kube.create(CONFIGMAPS.path("a"), cm("two"))
    kube.compact()
    async with kube.watch(CONFIGMAPS.path("a"), {"resourceVersion": "1"}) as stream:
        with pytest.raises(ApiError) as err:
            await anext(stream)
    assert err.value.is_gone


async def test_bookmarks_only_for_watches_that_allow_them(kube: FakeKube) -> None:
    async with (
        kube.watch(NAMESPACES.path(), {"resourceVersion": "0", "allowWatchBookmarks": True}) as with_bm,
        kube.watch(NAMESPACES.path(), {"resourceVersion": "0"}, idle_timeout=0.05) as without,
    ):
        await kube.create(SECRETS.path("x"), {"metadata": {"name": "s"}})
        kube.bookmark()
        (bookmark,) = await collect(with_bm, 1)
        with pytest.raises(WatchIdleTimeout):
            await anext(without)
    assert bookmark == {
        "type": "BOOKMARK",
        "object": {"kind": "Namespace", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}},
    }


async def test_ended_watches_close_normally_or_with_the_given_error(kube: FakeKube) -> None:
    async with kube.watch(CONFIGMAPS.path(), {"resourceVersion": "0"}) as stream:
        kube.end_watches()
        assert [e async for e in stream] == []
    async with kube.watch(CONFIGMAPS.path(), {"resourceVersion": "0"}) as stream:
        kube.end_watches(server_error(500))
        with pytest.raises(ApiError) as err:
            await anext(stream)
        assert err.value.status == 500
    async with kube.watch(CONFIGMAPS.path(), {"resourceVersion": "0"}) as stream:
        kube.end_watches(connection_reset())
        with pytest.raises(aiohttp.ClientError):
            await anext(stream)


@pytest.mark.looptime
async def test_a_silenced_watch_hits_the_idle_timeout_and_the_server_timeout_ends_a_quiet_one(
    kube: FakeKube,
) -> None:
    loop = asyncio.get_running_loop()
    async with kube.watch(CONFIGMAPS.path(), {"resourceVersion": "0"}, idle_timeout=80) as stream:
        kube.silence_watches()
        await kube.create(CONFIGMAPS.path("a"), cm("unseen"))
        started = loop.time()
        with pytest.raises(WatchIdleTimeout):
            await anext(stream)
        assert loop.time() - started == 80
    params = {"resourceVersion": str(kube.resource_version), "timeoutSeconds": 30}
    async with kube.watch(CONFIGMAPS.path(), params, idle_timeout=80) as stream:
        started = loop.time()
        assert [e async for e in stream] == []
        assert loop.time() - started == 30


async def test_fail_next_before_the_write_leaves_no_trace(kube: FakeKube) -> None:
    kube.fail_next("create", SECRETS, server_error(503))
    with pytest.raises(ApiError):
        await kube.create(SECRETS.path("ns"), {"metadata": {"name": "s"}})
    assert kube.read(SECRETS, "ns", "s") is None
    assert kube.resource_version == 0
    await kube.create(SECRETS.path("ns"), {"metadata": {"name": "s"}})  # only the next call failed


async def test_fail_next_after_the_write_applies_it_and_still_fails(kube: FakeKube) -> None:
    await kube.create(DATABASES.path("ns"), db("d"))
    kube.fail_next("patch", DATABASES, TimeoutError(), after=True, subresource="status")
    kube.fail_next("patch", SECRETS, conflict())  # another resource: not consumed by the status patch
    with pytest.raises(TimeoutError):
        await kube.patch(DATABASES.path("ns", "d", "status"), {"status": {"done": True}})
    assert (kube.read(DATABASES, "ns", "d") or {})["status"] == {"done": True}
    await kube.patch(DATABASES.path("ns", "d", "status"), {"status": {"done": False}})


async def test_faults_repeat_times_and_hooks_see_every_call(kube: FakeKube) -> None:
    seen: list[str] = []

    async def hook(call: Any) -> None:
        seen.append(f"{call.verb} {call.resource.plural} {call.name}")

    kube.hook = hook
    kube.fail_next("get", None, connection_reset(), times=2)
    await kube.create(CONFIGMAPS.path("ns"), cm("a"))
    for _ in range(2):
        with pytest.raises(aiohttp.ClientOSError):
            await kube.get(CONFIGMAPS.path("ns", "a"))
    assert (await kube.get(CONFIGMAPS.path("ns", "a")))["metadata"]["name"] == "a"
    assert seen == ["create configmaps None"] + ["get configmaps a"] * 3
