"""The informer against the real API server: bursts, restarts, expired resourceVersions, idle streams."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from kit_helpers import configmap, fresh_configmaps, informer_view, kube_client
from prometheus_client import CollectorRegistry

from dbaasctl.kube.cache import DeletedFinalStateUnknown, Informer
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import CONFIGMAPS
from testbed.controlplane import ControlPlane, KubeTools
from testbed.polling import eventually


class Recorder:
    """Rebuilds the world from handler calls alone: it must match the cache and the API server."""

    def __init__(self) -> None:
        self.view: dict[str, str] = {}
        self.tombstones: list[str] = []
        self.errors: list[str] = []

    def add(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in self.view:
            self.errors.append(f"add for known {name}")
        self.view[name] = obj["metadata"]["resourceVersion"]

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        name = new["metadata"]["name"]
        if name not in self.view:
            self.errors.append(f"update for unknown {name}")
        self.view[name] = new["metadata"]["resourceVersion"]

    def delete(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if isinstance(obj, DeletedFinalStateUnknown):
            self.tombstones.append(name)
        if self.view.pop(name, None) is None:
            self.errors.append(f"delete for unknown {name}")


def new_informer(client: Any, namespace: str, **kw: Any) -> tuple[Informer, Recorder]:
    informer = Informer(client, CONFIGMAPS, namespace=namespace, **kw)
    rec = Recorder()
    informer.add_handlers(rec.add, rec.update, rec.delete)
    return informer, rec


async def consistent(client: Any, namespace: str, informer: Informer, rec: Recorder) -> bool:
    fresh = await fresh_configmaps(client, namespace)
    return informer_view(informer) == fresh and rec.view == fresh


async def test_informer_view_equals_fresh_list_after_a_burst(
    control_plane: KubeTools, namespace: str
) -> None:
    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        # Some objects exist before the informer starts: they arrive through the (paged) list.
        for i in range(7):
            await client.create(CONFIGMAPS.path(namespace), configmap(f"pre-{i}", v="0"))
        informer, rec = new_informer(client, namespace, page_size=3)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            # (the namespace also holds kube-root-ca.crt, published by the controller manager)
            assert set(informer.keys()) >= {f"{namespace}/pre-{i}" for i in range(7)}
            assert set(informer_view(informer)) == set(await fresh_configmaps(client, namespace))
            rng = random.Random(42)
            names = [f"cm-{i}" for i in range(60)]

            async def churn(name: str) -> None:
                path = CONFIGMAPS.path(namespace)
                await client.create(path, configmap(name, v="0"))
                for n in range(rng.randrange(0, 4)):
                    await client.patch(CONFIGMAPS.path(namespace, name), {"data": {"v": str(n + 1)}})
                if rng.random() < 0.3:
                    await client.delete(CONFIGMAPS.path(namespace, name))

            await asyncio.gather(*(churn(n) for n in names))
            await client.delete(CONFIGMAPS.path(namespace, "pre-0"))
            assert await eventually(lambda: consistent(client, namespace, informer, rec), timeout=60)
            assert not rec.errors
            assert informer.health.lists == 1, "a healthy watch needs no relist"
        finally:
            await informer.stop()


async def test_indexer_and_label_selector_against_real_objects(
    control_plane: KubeTools, namespace: str
) -> None:
    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        informer = Informer(
            client,
            CONFIGMAPS,
            namespace=namespace,
            label_selector="app.kubernetes.io/managed-by=kit-test",
            indexers={"owner": lambda o: [o["metadata"].get("labels", {}).get("owner", "")]},
        )
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            for name, owner in [("a", "x"), ("b", "x"), ("c", "y")]:
                cm = configmap(name)
                cm["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "kit-test", "owner": owner}
                await client.create(CONFIGMAPS.path(namespace), cm)
            await client.create(CONFIGMAPS.path(namespace), configmap("unlabelled"))
            assert await eventually(lambda: len(informer.keys()) == 3)
            assert informer.index_keys("owner", "x") == [f"{namespace}/a", f"{namespace}/b"]
            obj = informer.get(f"{namespace}/a")
            assert obj is not None
            assert obj["kind"] == "ConfigMap"
            assert obj["apiVersion"] == "v1"
            assert "managedFields" not in obj["metadata"], "objects are stored slimmed"
            assert informer.get(f"{namespace}/unlabelled") is None
        finally:
            await informer.stop()


async def test_informer_recovers_after_api_server_restart_without_missing_changes(
    restartable_control_plane: ControlPlane, namespace: str
) -> None:
    cp = restartable_control_plane
    async with kube_client(cp.kubeconfig, registry=CollectorRegistry()) as client:
        path = CONFIGMAPS.path(namespace)
        for name in ("keep", "change", "drop"):
            await client.create(path, configmap(name, v="0"))
        informer, rec = new_informer(client, namespace)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            await client.patch(CONFIGMAPS.path(namespace, "change"), {"data": {"v": "1"}})
            await asyncio.to_thread(cp.restart_apiserver)
            # Changes right after the restart must reach the cache whichever way it resumed.
            await client.patch(CONFIGMAPS.path(namespace, "change"), {"data": {"v": "2"}})
            await client.delete(CONFIGMAPS.path(namespace, "drop"))
            await client.create(path, configmap("new", v="0"))
            assert await eventually(lambda: consistent(client, namespace, informer, rec), timeout=90)
            change = informer.get(f"{namespace}/change")
            assert change is not None
            assert change["data"] == {"v": "2"}
            assert not rec.errors
            assert informer.health.watches >= 2, "the watch was re-established"
            assert informer.check_alive() is None
        finally:
            await informer.stop()


async def test_expired_resource_version_relists_and_stays_consistent(
    restartable_control_plane: ControlPlane, namespace: str
) -> None:
    cp = restartable_control_plane
    async with kube_client(cp.kubeconfig, registry=CollectorRegistry()) as client:
        path = CONFIGMAPS.path(namespace)
        for i in range(5):
            await client.create(path, configmap(f"cm-{i}"))
        informer, rec = new_informer(client, namespace)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            assert await eventually(lambda: consistent(client, namespace, informer, rec))
            # Writes elsewhere move etcd past the informer's resourceVersion; compaction then
            # makes that version unavailable and the restart empties the watch cache: 410 on resume.
            other = f"{namespace}-other"
            await asyncio.to_thread(cp.create_namespace, other)
            try:
                await client.create(CONFIGMAPS.path(other), configmap("elsewhere"))
                stale_rv = informer.resource_version
                await asyncio.to_thread(cp.expire_resource_versions)
                with pytest.raises(ApiError) as gone:
                    await client.list(path, {"resourceVersion": stale_rv, "resourceVersionMatch": "Exact"})
                assert gone.value.is_gone, "the informer's resourceVersion really expired"
                await client.delete(CONFIGMAPS.path(namespace, "cm-0"))
                await client.patch(CONFIGMAPS.path(namespace, "cm-1"), {"data": {"after": "compaction"}})
                assert await eventually(lambda: informer.health.lists >= 2, timeout=90), informer.health
                assert await eventually(lambda: consistent(client, namespace, informer, rec), timeout=60)
                assert not rec.errors
            finally:
                await asyncio.to_thread(cp.kubectl, "delete", "namespace", other, "--wait=false")
        finally:
            await informer.stop()


async def test_restart_relist_delivers_tombstones_for_deletes_it_missed(
    control_plane: KubeTools, namespace: str
) -> None:
    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        path = CONFIGMAPS.path(namespace)
        for name in ("a", "b", "c"):
            await client.create(path, configmap(name, v="0"))
        informer, rec = new_informer(client, namespace)
        informer.start()
        assert await informer.wait_for_sync(60)
        await informer.stop()  # not watching: the next changes are missed as events
        await client.delete(CONFIGMAPS.path(namespace, "a"))
        await client.patch(CONFIGMAPS.path(namespace, "b"), {"data": {"v": "1"}})
        await client.create(path, configmap("d"))
        informer.start()
        try:
            assert await eventually(lambda: consistent(client, namespace, informer, rec), timeout=60)
            assert rec.tombstones == ["a"]
            assert not rec.errors
        finally:
            await informer.stop()


async def test_silent_stream_is_reopened_after_the_idle_timeout(
    control_plane: KubeTools, namespace: str
) -> None:
    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        informer, rec = new_informer(client, namespace, idle_timeout=1.5)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            assert await eventually(lambda: informer.health.watches >= 3, timeout=30)
            assert "WatchIdleTimeout" in str(informer.health.last_error)
            await client.create(CONFIGMAPS.path(namespace), configmap("after-idle"))
            assert await eventually(lambda: "after-idle" in rec.view, timeout=30)
            assert informer.check_alive() is None
        finally:
            await informer.stop()


async def test_supervisor_restarts_a_crashed_watch_loop(control_plane: KubeTools, namespace: str) -> None:
    crashed = False

    def fragile(obj: dict[str, Any]) -> dict[str, Any]:
        nonlocal crashed
        if obj["metadata"]["name"] == "poison" and not crashed:
            crashed = True
            raise RuntimeError("a bug in our own code")
        return obj

    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        informer, rec = new_informer(client, namespace, transform=fragile)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            await client.create(CONFIGMAPS.path(namespace), configmap("poison"))
            await client.create(CONFIGMAPS.path(namespace), configmap("after"))
            assert await eventually(lambda: consistent(client, namespace, informer, rec), timeout=60)
            assert informer.health.crashes == 1
            assert informer.health.lists == 2, "restarted with a relist"
            assert informer.check_alive() is None
        finally:
            await informer.stop()


async def test_objects_near_the_size_limit_pass_through_list_and_watch(
    control_plane: KubeTools, namespace: str
) -> None:
    big = "x" * 900_000  # far beyond aiohttp's default 128 KiB line limit
    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        await client.create(CONFIGMAPS.path(namespace), configmap("listed", blob=big))
        informer, rec = new_informer(client, namespace)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            await client.create(CONFIGMAPS.path(namespace), configmap("watched", blob=big))
            assert await eventually(lambda: "watched" in rec.view, timeout=60)
            for name in ("listed", "watched"):
                obj = informer.get(f"{namespace}/{name}")
                assert obj is not None
                assert len(obj["data"]["blob"]) == len(big)
            assert informer.health.lists == 1
        finally:
            await informer.stop()


async def test_streaming_list_fills_the_cache_and_the_same_stream_goes_on_watching(
    control_plane: KubeTools, namespace: str
) -> None:
    async with kube_client(control_plane.kubeconfig, registry=CollectorRegistry()) as client:
        for i in range(25):
            await client.create(CONFIGMAPS.path(namespace), configmap(f"pre-{i}", v="0"))
        informer, rec = new_informer(client, namespace, watch_list=True)
        informer.start()
        try:
            assert await informer.wait_for_sync(60)
            # The server streamed the initial state: no fallback to LIST happened.
            assert informer.reflector.watch_list, informer.health.last_error
            assert set(informer.keys()) >= {f"{namespace}/pre-{i}" for i in range(25)}
            assert set(rec.view) == {o["metadata"]["name"] for o in informer.list()}
            watches = informer.health.watches
            for i in range(10):
                await client.create(CONFIGMAPS.path(namespace), configmap(f"cm-{i}", v="0"))
            await client.patch(CONFIGMAPS.path(namespace, "pre-1"), {"data": {"v": "1"}})
            await client.delete(CONFIGMAPS.path(namespace, "pre-0"))
            assert await eventually(lambda: consistent(client, namespace, informer, rec), timeout=60)
            assert not rec.errors
            assert informer.health.lists == 1
            assert informer.health.watches == watches, "changes arrive on the stream that listed"
        finally:
            await informer.stop()
