"""Reliability §3 and §4: the operator itself fails, and its configuration changes under a storm.

- SIGKILL mid-storm, then started again: nothing lost (every Database Ready), nothing done twice (no
  create after a recorded success, counted on the server).
- Two replicas with leader election, the leader SIGKILLed mid-storm: the standby takes over once the
  lease expires, finishes the storm, and provisions nothing twice.
- Live configuration changes mid-storm: the DSN Secret rotated to a new password of the operator's DBMS
  login, an endpoint removed and re-added, a DatabaseClass deleted and re-created. While a change is in
  effect the Databases it affects say why; once reverted everything converges.

One private PostgreSQL (crash-safe commits, audit wrappers, every call slowed to 0.5 s so faults land
on calls in flight) for the module; the module ends with the leak scan over every operator's trace log.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.controlplane import KubeTools
from testbed.dbms import PostgresServer
from testbed.invariants import PostgresView
from testbed.operator import OperatorProcess
from testbed.reliability import World, audited_postgres_class, crash_safe_postgres, ready_of, scale, world_of

SLOW = 0.5


@dataclass
class Env:
    world: World
    pg: PostgresServer
    view: PostgresView
    classes: dict[str, dict[str, Any]]
    op_password: str
    op_dsn: str


@pytest.fixture(scope="module")
def env(kube: KubeTools, crds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with crash_safe_postgres() as pg, world_of(kube, tmp_path_factory.mktemp("relop"), "relop") as w:
        view = PostgresView(pg)
        view.install()
        # The operator's own DBMS login, so its password can be rotated without touching the admin's.
        password = secrets.token_urlsafe(18)
        pg.psql(f"CREATE ROLE dbaas_op LOGIN SUPERUSER PASSWORD '{password}'")
        dsn = pg.dsn_for("dbaas", user="dbaas_op", password=password)
        w.leaks.add(pg.admin_password, "PostgreSQL admin password")
        classes = {
            "main": audited_postgres_class(f"rel-op-{w.suffix}", slow=SLOW),
            "other": audited_postgres_class(f"rel-op-other-{w.suffix}", slow=SLOW),
        }
        for manifest in classes.values():
            w.add_class(manifest)
        w.dsn_secret("pg-dsn", dsn)
        main, other = (str(c["metadata"]["name"]) for c in classes.values())
        w.add_endpoint(main, {"name": "pg", "dsn": dsn}, view)
        w.add_endpoint(main, {"name": "pg-secret", "secretKeyRef": {"name": "pg-dsn", "key": "dsn"}}, view)
        w.add_endpoint(main, {"name": "pg-moving", "dsn": dsn}, view)
        w.add_endpoint(other, {"name": "pg-other", "dsn": dsn}, view)
        w.apply_config()
        w.start_operator()
        yield Env(w, pg, view, classes, password, dsn)


def test_operator_sigkilled_mid_storm_and_restarted(env: Env) -> None:
    w = env.world
    first = w.names("kill-a", scale(6))
    w.create_many(first, "pg")
    w.wait_ready(first)
    second = w.names("kill-b", scale(8))
    doomed, rotated = first[:2], first[2:]
    # A mixed storm: creates, rotations and deletes all in flight when the process dies.
    w.create_many(second, "pg")
    w.annotate_many(rotated, "dbaasctl.io/rotate=true")
    w.delete_many(doomed)
    time.sleep(SLOW + 0.2)
    operator = w.operators[0]
    operator.kill()
    more = w.names("kill-c", scale(4))
    w.create_many(more, "pg")  # work that arrives while no operator runs
    operator.start()
    w.wait_gone(doomed)
    w.wait_ready([*second, *more])
    w.wait_generation(rotated, 2)
    w.judge("operator SIGKILLed mid-storm and restarted", ["operator SIGKILL"])


def _leader(ops: list[OperatorProcess]) -> OperatorProcess | None:
    leaders = [op for op in ops if (op.metric("leader_election_master_status") or 0) >= 1]
    assert len(leaders) <= 1, "two leaders at once"
    return leaders[0] if leaders else None


def test_leader_killed_mid_storm(env: Env) -> None:
    w = env.world
    w.retire(w.operators[0])
    a = w.start_operator(leader_elect=True)
    b = w.start_operator(leader_elect=True)
    deadline = time.monotonic() + 60
    while (leader := _leader([a, b])) is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert leader is not None, "no replica became leader"
    standby = b if leader is a else a
    names = w.names("lead", scale(12))
    w.create_many(names, "pg")
    time.sleep(SLOW + 0.2)
    leader.kill()
    deadline = time.monotonic() + 60
    while _leader([standby]) is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _leader([standby]) is standby, "the standby did not take over"
    w.wait_ready(names, timeout=120)
    leader.start()  # back as a standby: two processes, one leader
    assert _leader([leader, standby]) is standby
    w.judge("leader SIGKILLed mid-storm (2 replicas, leader election)", ["leader SIGKILL", "failover"])


def test_live_config_changes_mid_storm(env: Env) -> None:
    w = env.world
    via_secret = w.names("cfg-secret", scale(6))
    early = w.names("cfg-early", scale(2))
    w.create_many(via_secret, "pg-secret")
    w.create_many(early, "pg-moving")

    # 1. The operator's DBMS password is rotated and its sessions are cut (as a DBA would do it); the
    #    DSN Secret and the inline DSNs follow only later, so for a while every new connection fails.
    new_password = secrets.token_urlsafe(18)
    w.leaks.add(new_password, "rotated DBMS password")
    env.pg.psql(
        f"ALTER ROLE dbaas_op PASSWORD '{new_password}'; "
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'dbaas_op'"
    )
    new_dsn = env.pg.dsn_for("dbaas", user="dbaas_op", password=new_password)
    # 2. An endpoint disappears from the OperatorConfig and 3. a DatabaseClass is deleted, mid-storm.
    removed = w.remove_endpoint("pg-moving")
    w.apply_config()
    other_class = str(env.classes["other"]["metadata"]["name"])
    w.kube.kubectl("delete", "databaseclass", other_class, "--wait=true")
    moving = w.names("cfg-moving", scale(3))
    reclassed = w.names("cfg-class", scale(3))
    w.create_many(moving, "pg-moving")
    w.create_many(reclassed, "pg-other")

    def reported(dbs: dict[str, dict[str, Any]]) -> bool:
        reason = {n: (ready_of(d) or ("", ""))[1] for n, d in dbs.items()}
        return all(reason.get(n) == "EndpointNotFound" for n in moving) and all(
            reason.get(n) == "ClassNotFound" for n in reclassed
        )

    w.wait_dbs("the removed endpoint and the deleted class to be reported", reported, timeout=60)
    assert not {c.name for c in env.view.attempts()} & {*moving, *reclassed}, "a DBMS call was made"

    w.dsn_secret("pg-dsn", new_dsn)
    for _, endpoints in w.dbms:  # the inline DSNs carry the old password too
        for ep in endpoints:
            if "dsn" in ep:
                ep["dsn"] = new_dsn
    w.add_endpoint(str(env.classes["main"]["metadata"]["name"]), {**removed, "dsn": new_dsn})
    w.apply_config()
    w.add_class(env.classes["other"])
    w.wait_ready([*via_secret, *early, *moving, *reclassed], timeout=120)
    report = w.judge(
        "live config changes mid-storm (DSN password rotated, endpoint removed/re-added, class deleted/re-created)",
        [
            "DBMS password rotated + sessions killed",
            "endpoint removed and re-added",
            "DatabaseClass deleted and re-created",
        ],
    )
    assert report.logins_verified == report.ready


def test_no_secret_leaked(env: Env) -> None:
    env.world.leaks.add(env.op_password, "operator DBMS password")
    env.world.leaks.add_dsn(env.op_dsn, "operator DSN")
    env.world.scan_leaks()
