"""Leader election between two real manager processes: one leader, fast hand-over, never both working.

Each process runs tests/e2e/kit_manager_proc.py (a ConfigMap controller on the kit) and logs every
reconcile as a CLOCK_MONOTONIC interval; intervals of different replicas must never overlap. Meanwhile
the test samples both processes' `leader_election_master_status` and the Lease itself.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import port_for
import pytest
from kit_helpers import configmap, http_get, kube_client, metric_value

from dbaasctl.kube.resources import CONFIGMAPS, LEASES
from testbed.controlplane import REPO, KubeTools
from testbed.polling import eventually

SCRIPT = Path(__file__).with_name("kit_manager_proc.py")
LEASE, RENEW, RETRY = 8.0, 5.0, 1.0
JITTER = 1.2


@dataclass
class Replica:
    identity: str
    proc: subprocess.Popen[bytes]
    probe_port: int
    metrics_port: int
    log: Path

    async def is_leader(self) -> bool | None:
        try:
            _, text = await http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        except OSError:
            return None
        value = metric_value(text, "leader_election_master_status")
        return None if value is None else value == 1.0


@dataclass
class Cluster:
    kube: KubeTools
    namespace: str
    workdir: Path
    worklog: Path
    replicas: list[Replica] = field(default_factory=list)

    def start(self, identity: str) -> Replica:
        probe, metrics = int(port_for.select_random()), int(port_for.select_random())
        log = self.workdir / f"{identity}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests" / "e2e")])}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    str(self.kube.kubeconfig),
                    self.namespace,
                    "kit-leader",
                    identity,
                    str(self.worklog),
                    str(probe),
                    str(metrics),
                    str(LEASE),
                    str(RENEW),
                    str(RETRY),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        replica = Replica(identity, proc, probe, metrics, log)
        self.replicas.append(replica)
        return replica

    def intervals(self) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        if not self.worklog.exists():
            return out
        for line in self.worklog.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 4:
                out.setdefault(parts[0], []).append((float(parts[1]), float(parts[2])))
        return out


@pytest.fixture
def cluster(control_plane: KubeTools, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(control_plane, namespace, tmp_path, tmp_path / "work.log")
    yield c
    for r in c.replicas:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(10)


def assert_never_both_worked(cluster: Cluster) -> None:
    spans = sorted((s, e, who) for who, items in cluster.intervals().items() for s, e in items)
    for (s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
        assert not (w1 != w2 and s2 < e1), f"{w1} [{s1:.3f},{e1:.3f}] overlaps {w2} starting {s2:.3f}"


class Sampler:
    """Polls every replica's leader gauge; records any moment at which two claim leadership."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.samples = 0
        self.double: list[list[str]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            alive = [r for r in self.cluster.replicas if r.proc.poll() is None]
            states = await asyncio.gather(*(r.is_leader() for r in alive))
            leaders = [r.identity for r, s in zip(alive, states, strict=True) if s]
            self.samples += 1
            if len(leaders) > 1:
                self.double.append(leaders)
            await asyncio.sleep(0.1)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def current_leader(cluster: Cluster) -> Replica | None:
    alive = [r for r in cluster.replicas if r.proc.poll() is None]
    states = await asyncio.gather(*(r.is_leader() for r in alive))
    leaders = [r for r, s in zip(alive, states, strict=True) if s]
    return leaders[0] if len(leaders) == 1 else None


async def elect(cluster: Cluster) -> tuple[Replica, Replica]:
    a, b = cluster.start("replica-a"), cluster.start("replica-b")
    async with kube_client(cluster.kube.kubeconfig) as client:
        await client.create(CONFIGMAPS.path(cluster.namespace), configmap("work-1"))
        await client.create(CONFIGMAPS.path(cluster.namespace), configmap("work-2"))
        assert await eventually(lambda: current_leader(cluster), timeout=60), "no single leader elected"
        leader = await current_leader(cluster)
        assert leader is not None
        lease = await client.get(LEASES.path(cluster.namespace, "kit-leader"))
        assert lease["spec"]["holderIdentity"] == leader.identity
    standby = b if leader is a else a
    assert await eventually(lambda: leader.identity in cluster.intervals(), timeout=30), "leader does no work"
    await asyncio.sleep(2 * RETRY * (1 + JITTER))
    assert await standby.is_leader() is False
    assert standby.identity not in cluster.intervals(), "the standby ran workers"
    return leader, standby


async def handover_time(cluster: Cluster, new_leader: Replica, since: float, timeout: float) -> float:
    """Seconds from `since` (monotonic) to the new leader's first reconcile."""

    def started() -> bool:
        return bool(cluster.intervals().get(new_leader.identity))

    assert await eventually(started, timeout=timeout, interval=0.05), "no hand-over"
    return min(s for s, _ in cluster.intervals()[new_leader.identity]) - since


async def test_sigkill_of_the_leader_hands_over_within_the_lease(cluster: Cluster) -> None:
    with Sampler(cluster) as sampler:
        leader, standby = await elect(cluster)
        killed_at = time.monotonic()
        leader.proc.send_signal(signal.SIGKILL)
        took = await handover_time(cluster, standby, killed_at, timeout=60)
        assert sampler.samples > 20
        assert not sampler.double, f"two leaders at once: {sampler.double}"
    # The standby may only start once the lease (measured from its last observed renewal) expired,
    # and must not need much more: one jittered retry period to notice, one to act.
    bound = LEASE + 2 * RETRY * (1 + JITTER) + 1.0
    print(f"SIGKILL hand-over took {took:.2f}s (lease {LEASE}s, bound {bound:.1f}s)")
    assert 0 < took <= bound
    assert_never_both_worked(cluster)


async def test_sigterm_releases_the_lease_for_an_immediate_hand_over(cluster: Cluster) -> None:
    with Sampler(cluster) as sampler:
        leader, standby = await elect(cluster)
        stopped_at = time.monotonic()
        leader.proc.send_signal(signal.SIGTERM)
        took = await handover_time(cluster, standby, stopped_at, timeout=60)
        assert leader.proc.wait(30) == 0, leader.log.read_text()[-3000:]
        assert not sampler.double, f"two leaders at once: {sampler.double}"
    print(f"SIGTERM hand-over took {took:.2f}s (lease {LEASE}s)")
    assert took < LEASE / 2, "released lease is taken well before it would have expired"
    assert "released by replica" in leader.log.read_text()
    assert_never_both_worked(cluster)
    # The new leader shuts down cleanly too, and leaves the lease released.
    standby.proc.send_signal(signal.SIGTERM)
    assert standby.proc.wait(30) == 0
    async with kube_client(cluster.kube.kubeconfig) as client:
        lease = await client.get(LEASES.path(cluster.namespace, "kit-leader"))
    assert not lease["spec"].get("holderIdentity")
    assert lease["spec"]["leaseTransitions"] >= 1
