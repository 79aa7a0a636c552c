"""Reliability §2: the DBMS is killed (SIGKILL, crash recovery on restart) during create, rotate and
delete storms, PostgreSQL first, then MariaDB.

One operator serves both private servers (each behind call-counting wrappers, every call slowed down so
the kill lands on calls in flight). While a server is down the Databases show why (EndpointUnavailable,
RotateFailed, DeleteFailed) and nothing worse happens; once it is back every storm completes and every
invariant holds on the API and on the server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.invariants import MariaDBView, PostgresView
from testbed.reliability import (
    CrashSafeMariaDB,
    World,
    audited_mariadb_class,
    audited_postgres_class,
    crash,
    crash_safe_postgres,
    ready_of,
    scale,
    world_of,
)

DOWN_SECONDS = 1.5


@dataclass
class Env:
    world: World
    servers: dict[str, PostgresServer | MariaDBServer]  # endpoint -> server


@pytest.fixture(scope="module")
def env(kube: KubeTools, crds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with (
        crash_safe_postgres() as pg,
        CrashSafeMariaDB() as maria,
        world_of(kube, tmp_path_factory.mktemp("reldbms"), "reldbms") as w,
    ):
        pg_view, maria_view = PostgresView(pg), MariaDBView(maria)
        pg_class = w.add_class(audited_postgres_class(f"rel-dbms-pg-{w.suffix}", slow=0.3))
        maria_class = w.add_class(audited_mariadb_class(f"rel-dbms-maria-{w.suffix}", slow=0.3))
        w.add_endpoint(pg_class, {"name": "pg", "dsn": pg_view.install()}, pg_view)
        w.add_endpoint(maria_class, {"name": "maria", "dsn": maria_view.install()}, maria_view)
        w.leaks.add(pg.admin_password, "PostgreSQL admin password")
        w.leaks.add(maria.admin_password, "MariaDB admin password")
        w.apply_config()
        w.start_operator()
        yield Env(w, {"pg": pg, "maria": maria})
        for server in (pg, maria):
            if not server.running():
                server.start()  # the world's teardown deletes through the operator


@pytest.mark.parametrize("endpoint", ["pg", "maria"])
def test_dbms_killed_during_create_storm(env: Env, endpoint: str) -> None:
    w, server = env.world, env.servers[endpoint]
    names = w.names(f"{endpoint}-c", scale(10))
    w.create_many(names, endpoint)
    time.sleep(0.4)  # creates are in flight (each sleeps 0.3 s on the server)
    crash(server)
    # While the server is down the failures are visible and specific; nothing is Ready by accident.
    w.wait_dbs(
        "Databases reporting the outage",
        lambda dbs: any(
            c.get("type") == "Ready" and c.get("reason") == "EndpointUnavailable"
            for n in names
            for c in (dbs.get(n, {}).get("status") or {}).get("conditions") or []
        ),
        timeout=60,
    )
    server.start()
    w.wait_ready(names, timeout=180)
    report = w.judge(f"{endpoint} killed during a create storm", [f"{endpoint} SIGKILL during create"])
    assert report.logins_verified >= len(names)


def _wait_reason(w: World, names: list[str], reason: str) -> None:
    """Wait until the outage shows on at least one of these Databases as `reason`."""
    w.wait_dbs(
        f"a Database reporting {reason}",
        lambda dbs: any((ready_of(dbs[n]) or ("", ""))[1] == reason for n in names if n in dbs),
        timeout=60,
    )


@pytest.mark.parametrize("endpoint", ["pg", "maria"])
def test_dbms_killed_during_rotate_storm(env: Env, endpoint: str) -> None:
    w, server = env.world, env.servers[endpoint]
    names = w.names(f"{endpoint}-c", scale(10))
    w.annotate_many(names, "dbaasctl.io/rotate=true")
    time.sleep(0.1)  # rotations are in flight (each sleeps 0.3 s on the server)
    crash(server)
    # A failed rotation keeps Ready=True (the Secret still works) and says so; never a re-create.
    _wait_reason(w, names, "RotateFailed")
    time.sleep(DOWN_SECONDS)
    server.start()
    w.wait_generation(names, 2, timeout=180)
    report = w.judge(f"{endpoint} killed during a rotate storm", [f"{endpoint} SIGKILL during rotate"])
    assert report.rotates >= len(names)


@pytest.mark.parametrize("endpoint", ["pg", "maria"])
def test_dbms_killed_during_delete_storm(env: Env, endpoint: str) -> None:
    w, server = env.world, env.servers[endpoint]
    names = w.names(f"{endpoint}-c", scale(10))
    doomed = names[: len(names) // 2]
    w.delete_many(doomed)
    time.sleep(0.1)
    crash(server)
    # A delete that cannot run keeps the Database (and its finalizer) with a visible reason.
    _wait_reason(w, doomed, "DeleteFailed")
    time.sleep(DOWN_SECONDS)
    server.start()
    w.wait_gone(doomed, timeout=180)
    report = w.judge(f"{endpoint} killed during a delete storm", [f"{endpoint} SIGKILL during delete"])
    assert report.deletes >= len(doomed)


def test_no_secret_leaked(env: Env) -> None:
    env.world.scan_leaks()
