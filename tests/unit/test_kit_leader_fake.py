"""Leader election against FakeKube on virtual time: takeover timing, conflicts, release."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.kube.leader import LeaderElectionConfig, LeaderElector
from dbaasctl.kube.resources import LEASES
from support.fakekube import Call, FakeKube, conflict

pytestmark = pytest.mark.looptime


def elector(kube: FakeKube, identity: str) -> LeaderElector:
    config = LeaderElectionConfig("lead", "ops", identity=identity)  # 15 s lease, 10 s deadline, 2 s retry
    return LeaderElector(kube, config, registry=CollectorRegistry())


@pytest.mark.parametrize("seed", range(40))
async def test_a_standby_takes_over_no_sooner_than_a_lease_after_the_last_renewal_it_saw(seed: int) -> None:
    random.seed(seed)  # the retry jitter: each seed one interleaving of renewals and polls, reproducibly
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
    # b saw the last renewal at most one of its polls (a jittered retry period, up to 2 x 2.2 s) before
    # a stopped, and finds the lease expired at its first poll after that plus 15 s: one more period.
    assert 15 - 2 * 2.2 <= took <= 15 + 2 * (2 * 2.2)
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


async def test_a_renewal_counts_from_when_it_was_sent_not_when_the_answer_came() -> None:
    kube = FakeKube()
    loop = asyncio.get_running_loop()
    a = elector(kube, "a")
    await a.acquire()
    sent: list[float] = []

    async def note_send(call: Call) -> None:
        if call.verb == "replace":
            sent.append(loop.time())

    async def slow_answer(call: Call) -> None:
        if call.verb == "replace":
            await asyncio.sleep(8)  # applied by the server at once, answered 8 s later

    kube.hook, kube.after_hook = note_send, slow_answer
    holding = asyncio.create_task(a.hold())
    while not sent or loop.time() < sent[0] + 8:
        await asyncio.sleep(0.5)
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding
    # A standby saw the renewal when the server applied it (at the send), so that is where the lease
    # counts from; the answer's arrival would give this leader 8 s it does not have.
    assert a.lease_valid_until == sent[0] + 15


async def test_may_act_refuses_once_the_lease_may_have_lapsed_even_while_still_leader() -> None:
    kube = FakeKube()
    loop = asyncio.get_running_loop()
    a = elector(kube, "a")
    await a.acquire()
    acquired_at = loop.time()
    assert a.may_act()
    assert a.may_act(14.9)
    assert not a.may_act(15.1), "an action longer than the lease could outlive it"
    await asyncio.sleep(11)  # no renewal ran: a stalled loop, a hung API server
    assert a.is_leader, "nothing has told it yet"
    assert a.may_act(3.9)
    assert not a.may_act(4.1)
    await asyncio.sleep(4)
    assert not a.may_act()
    assert loop.time() - acquired_at == pytest.approx(15)
