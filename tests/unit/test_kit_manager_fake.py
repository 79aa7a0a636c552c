"""The whole manager on FakeKube: informers, leader election, workers and fencing, without a cluster."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from dbaasctl.kube.controller import Result
from dbaasctl.kube.manager import Manager
from dbaasctl.kube.manager_settings import ManagerSettings
from dbaasctl.kube.resources import CONFIGMAPS, LEASES, object_key
from support.fakekube import FakeKube


async def test_a_leading_manager_reconciles_may_act_and_releases_its_lease_on_stop() -> None:
    kube = FakeKube()
    await kube.create(CONFIGMAPS.path("ns"), {"metadata": {"name": "a"}})
    settings = ManagerSettings(
        probe_host="127.0.0.1",
        probe_port=0,
        metrics_port=None,
        lease_namespace="ops",
        identity="me",
        handle_signals=False,
        graceful_shutdown_timeout=5.0,
    )
    manager = Manager(kube, settings, registry=CollectorRegistry())
    informer = manager.add_informer(CONFIGMAPS, namespace="ns")
    fenced: list[tuple[str, bool]] = []

    async def reconcile(key: str) -> Result | None:
        fenced.append((key, manager.may_act(1.0)))
        return None

    controller = manager.add_controller("cm", reconcile, workers=1)
    informer.add_handlers(on_add=lambda obj: controller.enqueue(object_key(obj)))
    assert not manager.may_act(), "not leading before run()"
    running = asyncio.create_task(manager.run())
    async with asyncio.timeout(10):
        while not fenced:
            await asyncio.sleep(0.01)
    assert fenced == [("ns/a", True)]
    assert (kube.read(LEASES, "ops", "dbaasctl-leader") or {})["spec"]["holderIdentity"] == "me"
    manager.stop()
    assert await asyncio.wait_for(running, 10) == 0
    assert not manager.may_act()
    assert (kube.read(LEASES, "ops", "dbaasctl-leader") or {})["spec"]["holderIdentity"] == ""
    assert kube.closed
