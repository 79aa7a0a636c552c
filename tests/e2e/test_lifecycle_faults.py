"""The DBMS goes away in the middle of each operation, and comes back.

A private PostgreSQL (stopped and started by these tests, so no other module sees the outage) and one
operator for the module. Each failure must be visible (condition, Warning Event, metric), must not do
anything worse than waiting (no re-create after a failed rotation, no skipped delete), and must heal on
its own once the server is back.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.controlplane import KubeTools
from testbed.dbms import PostgresServer
from testbed.logins import pg_can_login as can_login
from testbed.operator import (
    Observer,
    OperatorProcess,
    apply,
    database,
    install_postgres_procedures,
    operator_config,
    postgres_class,
    release_databases,
)


@dataclass
class Env:
    kube: KubeTools
    obs: Observer
    operator: OperatorProcess
    pg: PostgresServer
    ns: str

    def creds(self, name: str) -> dict[str, str]:
        secret = self.obs.secret(self.ns, f"{name}-credentials")
        assert secret is not None
        return Observer.decoded(secret)

    def metric(self, name: str, **labels: str) -> float:
        return self.operator.metric(name, labels or None) or 0.0


@pytest.fixture(scope="module")
def env(kube: KubeTools, crds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    suffix = secrets.token_hex(3)
    system = kube.create_namespace(f"dbaas-sys-{suffix}")
    ns = kube.create_namespace(f"faults-{suffix}")
    with PostgresServer() as pg:
        dsn = install_postgres_procedures(pg)
        cls = postgres_class(f"pg-faults-{suffix}")
        apply(
            kube,
            cls,
            operator_config("dbaasctl", system, [(cls["metadata"]["name"], [{"name": "flaky", "dsn": dsn}])]),
        )
        operator = OperatorProcess(
            kube.kubeconfig,
            system,
            tmp_path_factory.mktemp("operator"),
            extra_args=[f"--watch-namespaces={ns}"],
        )
        operator.start()
        try:
            yield Env(kube, Observer(kube, operator), operator, pg, ns)
        finally:
            if not pg.running():
                pg.start()
            kube.kubectl("delete", "databases", "--all", "-n", ns, "--timeout=90s", check=False)
            operator.stop()
            release_databases(kube, ns)
            kube.kubectl("delete", "namespace", ns, system, "--wait=false", check=False)
            kube.kubectl("delete", "databaseclass", cls["metadata"]["name"], "--wait=false", check=False)


def test_dbms_down_during_create_then_back(env: Env) -> None:
    env.pg.stop()
    apply(env.kube, database("early", env.ns, "flaky"))
    db = env.obs.wait_db(env.ns, "early", "False", "EndpointUnavailable")
    assert "flaky" in Observer.ready_of(db)[2]  # type: ignore[index]
    assert "dbaasctl.io/finalizer" in db["metadata"]["finalizers"]  # added before the first DBMS call
    event = env.obs.wait_event(env.ns, "early", "EndpointUnavailable")
    assert event["type"] == "Warning"
    assert env.metric("dbaasctl_databases_not_ready", reason="EndpointUnavailable") >= 1
    env.pg.start()
    env.obs.wait_db(env.ns, "early", "True", "Provisioned", timeout=90)
    assert can_login(env.creds("early"))


def test_dbms_down_during_rotate_never_recreates(env: Env) -> None:
    apply(env.kube, database("rotor", env.ns, "flaky"))
    before = env.obs.wait_db(env.ns, "rotor", "True")
    old = env.creds("rotor")
    creates = env.metric("dbaasctl_dbms_operations_total", endpoint="flaky", operation="create")
    env.pg.stop()
    env.kube.kubectl("annotate", "-n", env.ns, "db/rotor", "dbaasctl.io/rotate=true")
    # A refused connection and a connection lost after the rotate committed look alike to the driver:
    # the outcome is unknown, and so is whether the Secret still works.
    db = env.obs.wait_db(env.ns, "rotor", "Unknown", "RotateFailed")
    assert "outcome is unknown" in Observer.ready_of(db)[2]  # type: ignore[index]
    assert db["status"]["provisionedAt"] == before["status"]["provisionedAt"]
    assert env.obs.wait_event(env.ns, "rotor", "RotateFailed")["type"] == "Warning"
    assert env.metric("dbaasctl_database_rotations_failing") >= 1
    env.pg.start()

    def rotated() -> dict[str, str] | None:
        current = env.obs.db(env.ns, "rotor") or {}
        done = (current.get("status") or {}).get("credentialGeneration") == 2
        return current if done and Observer.ready_of(current)[:2] == ("True", "Rotated") else None  # type: ignore[index]

    after = env.obs.wait("the rotation to succeed after the outage", rotated, timeout=90)
    assert "dbaasctl.io/rotate" not in after["metadata"].get("annotations", {})
    assert after["status"]["provisionedAt"] == before["status"]["provisionedAt"]
    assert env.metric("dbaasctl_dbms_operations_total", endpoint="flaky", operation="create") == creates
    new = env.creds("rotor")
    assert can_login(new)
    assert not can_login(old)


def test_dbms_down_during_delete_waits_visibly(env: Env) -> None:
    apply(env.kube, database("doomed", env.ns, "flaky"))
    env.obs.wait_db(env.ns, "doomed", "True")
    name = env.creds("doomed")["database"]
    env.pg.stop()
    env.kube.kubectl("delete", "db", "-n", env.ns, "doomed", "--wait=false")
    db = env.obs.wait_db(env.ns, "doomed", "False", "DeleteFailed")
    assert db["metadata"].get("deletionTimestamp")
    assert "dbaasctl.io/finalizer" in db["metadata"]["finalizers"]
    assert env.obs.wait_event(env.ns, "doomed", "DeleteFailed")["type"] == "Warning"
    assert env.metric("dbaasctl_database_deletes_failing") == 1
    assert env.obs.secret(env.ns, "doomed-credentials") is not None  # nothing is dropped before the database
    env.pg.start()
    env.obs.wait_gone(env.ns, "doomed", timeout=90)
    assert env.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "0"
    env.obs.wait("the Secret deleted", lambda: env.obs.secret(env.ns, "doomed-credentials") is None)
    assert env.metric("dbaasctl_database_deletes_failing") == 0


def test_stuck_delete_released_by_switching_to_retain(env: Env) -> None:
    """The documented way out when a database cannot be deleted: deletionPolicy Retain on the object."""
    apply(env.kube, database("stuck", env.ns, "flaky"))
    env.obs.wait_db(env.ns, "stuck", "True")
    name = env.creds("stuck")["database"]
    env.pg.stop()
    try:
        env.kube.kubectl("delete", "db", "-n", env.ns, "stuck", "--wait=false")
        env.obs.wait_db(env.ns, "stuck", "False", "DeleteFailed")
        env.kube.kubectl(
            "patch", "db", "-n", env.ns, "stuck", "--type=merge", "-p", '{"spec":{"deletionPolicy":"Retain"}}'
        )
        env.obs.wait_gone(env.ns, "stuck")
        secret = env.obs.secret(env.ns, "stuck-credentials")
        assert secret is not None  # released, not deleted
        assert not secret["metadata"].get("ownerReferences")
    finally:
        env.pg.start()
    assert env.pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "1"
    assert env.metric("dbaasctl_database_deletes_failing") == 0
    env.kube.kubectl("delete", "secret", "-n", env.ns, "stuck-credentials")
