"""Leader election against FakeKube on virtual time: takeover timing, conflicts, release."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.kube.leader import LeaderElectionConfig, LeaderElector
from dbaasctl.kube.resources import LEASES
from support.fakekube import FakeKube, conflict

pytestmark = pytest.mark.looptime


def elector(kube: FakeKube, identity: str) -> LeaderElector:
    config = LeaderElectionConfig("lead", "ops", identity=identity)  # 15 s lease, 10 s deadline, 2 s retry
    return LeaderElector(kube, config, registry=CollectorRegistry())


async def test_a_standby_takes_over_no_sooner_than_a_lease_after_the_last_renewal_it_saw() -> None:
    kube = FakeKube()
    loop = asyncio.get_running_loop()
    a, b = elector(kube, "a"), elector(kube, "b")
    await a.acquire()
    holding = asyncio.create_task(a.hold())
    standby = asyncio.create_task(b.acquire())
    await asyncio.sleep(30)
    assert not standby.done(), "a renewing leader keeps its lease"
    holding.cancel()  # a stops renewing (crashed) without releasing
    with contextlib.suppress(asyncio.CancelledError):
        await holding
    last_renewal = kube.read(LEASES, "ops", "lead")
    assert last_renewal is not None
    stopped_at = loop.time()
    await asyncio.wait_for(standby, 60)
    took = loop.time() - stopped_at
    # b saw the last renewal at most one retry period (jittered: up to 2 x 2.2 s) before a stopped.
    assert 15 - 2 * 2.2 <= took <= 15 + 2 * 2.2
    lease = kube.read(LEASES, "ops", "lead") or {}
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == last_renewal["spec"]["leaseTransitions"] + 1


async def test_release_survives_a_conflicting_write_and_hands_over_at_once() -> None:
    kube = FakeKube()
    a, b = elector(kube, "a"), elector(kube, "b")
    await a.acquire()
    kube.fail_next("replace", LEASES, conflict())
    assert await a.release() is True
    lease = kube.read(LEASES, "ops", "lead") or {}
    assert lease["spec"]["holderIdentity"] == ""
    assert lease["spec"]["leaseDurationSeconds"] == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(b.acquire(), 10)
    assert loop.time() - started < 2 * 2.2, "no full lease wait after a release"


async def test_release_gives_up_when_someone_else_holds_the_lease() -> None:
    kube = FakeKube()
    a = elector(kube, "a")
    await a.acquire()
    await kube.patch(LEASES.path("ops", "lead"), {"spec": {"holderIdentity": "thief"}})
    assert await a.release() is False
    assert (kube.read(LEASES, "ops", "lead") or {})["spec"]["holderIdentity"] == "thief"
