"""Reliability §1: the control plane fails under a storm; nothing is lost, nothing is done twice.

One private PostgreSQL (sample functions behind call-counting wrappers, every call slowed down so
faults land on calls in flight) and one operator at trace level for the module. Each test throws a storm,
injects one control-plane fault in the middle of it, waits for the storm to settle and then checks
every invariant on the API and on the server (testbed.invariants). The module ends with the leak scan.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.controlplane import ControlPlane, KubeTools
from testbed.dbms import PostgresServer
from testbed.invariants import PostgresView
from testbed.reliability import World, audited_postgres_class, scale, world_of


@pytest.fixture(scope="module")
def cp(control_plane: KubeTools) -> ControlPlane:
    if not isinstance(control_plane, ControlPlane):
        pytest.skip("fault injection needs the local control plane")
    return control_plane


@pytest.fixture(scope="module")
def world(cp: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with PostgresServer() as pg, world_of(cp, tmp_path_factory.mktemp("relcp"), "relcp") as w:
        view = PostgresView(pg)
        dsn = view.install()
        cls = w.add_class(audited_postgres_class(f"rel-cp-{w.suffix}", slow=0.3))
        w.add_endpoint(cls, {"name": "pg", "dsn": dsn}, view)
        w.leaks.add(pg.admin_password, "PostgreSQL admin password")
        w.apply_config()
        w.start_operator()
        yield w


def test_apiserver_killed_during_create_storm(world: World, cp: ControlPlane) -> None:
    names = world.names("api", scale(12))
    half = len(names) // 2
    world.create_many(names[:half], "pg")
    time.sleep(0.2)  # the operator is now creating: finalizers, slow create calls, Secrets, status
    cp.restart_apiserver(sig=signal.SIGKILL)
    world.create_many(names[half:], "pg")
    world.wait_ready(names, timeout=180)
    report = world.judge("apiserver killed during a create storm", ["kube-apiserver SIGKILL"])
    assert report.ready == len(names)
    assert report.logins_verified == len(names)


def test_etcd_restarted_during_rotate_storm(world: World, cp: ControlPlane) -> None:
    names = world.names("api", scale(12))
    world.annotate_many(names, "dbaasctl.io/rotate=true")
    time.sleep(0.3)
    cp.restart_etcd(down_seconds=1)
    world.wait_generation(names, 2, timeout=180)
    report = world.judge("etcd restarted during a rotate storm", ["etcd stopped 1 s"])
    assert report.rotates >= len(names)


def test_watch_expiry_forces_relist_during_delete_and_create_storm(world: World, cp: ControlPlane) -> None:
    old = world.names("api", scale(12))
    doomed, kept = old[: len(old) // 2], old[len(old) // 2 :]
    fresh = world.names("relist", scale(6))
    operator = world.operators[0]
    world.delete_many(doomed)
    # Compact etcd and restart the API server (empty watch cache): every resourceVersion the operator's
    # watches hold is now gone for good. SIGKILL: a graceful stop keeps old watches open for 20 s.
    cp.compact_etcd()
    cp.restart_apiserver(sig=signal.SIGKILL)
    world.create_many(fresh, "pg")
    world.wait_gone(doomed, timeout=180)
    world.wait_ready([*kept, *fresh], timeout=180)
    operator.wait_for_log(lambda r: "relisting" in str(r.get("message", r.get("msg", ""))), timeout=30)
    report = world.judge(
        "watch expiry (etcd compaction + API server restart) during delete and create storms",
        ["etcd compaction", "kube-apiserver SIGKILL"],
    )
    assert report.deletes >= len(doomed)
    assert report.ready == len(kept) + len(fresh)


def test_no_secret_leaked(world: World) -> None:
    figures = world.scan_leaks()
    assert figures["secrets"] >= scale(12)
