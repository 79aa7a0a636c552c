"""Credential rotation no application notices, proven by a live client on the real control plane, real
PostgreSQL and MariaDB, and `dbaasctl run` as a subprocess, with the A/B sample classes.

Through an annotation, a Secret deletion and a scheduled rotation, a client opening a new connection
with the Secret's current credentials every 100 ms and a pooled connection that follows the Secret see
0 failed logins and 0 failed queries; a pooled connection with a pre-ping only is ended by each retire
and replaced, with at most the query in flight at that instant failing; the superseded credentials are
refused after retire, and the overlap (new credentials visible → old ones refused) is measured and
printed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pymysql
import pytest
import yaml
from kit_helpers import kube_client

from testbed.controlplane import KubeTools
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.liveclient import Dbms, LiveClient
from testbed.operator import (
    SAMPLES,
    Observer,
    OperatorProcess,
    apply,
    database,
    install_postgres_procedures,
    operator_config,
)

DB = "dbaas_live"
GRACE = 4.0
INTERVAL = 30.0


@dataclass
class Env:
    kube: KubeTools
    obs: Observer
    operator: OperatorProcess
    namespace: str


def _class(dbms: str, suffix: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / dbms / "databaseclass-ab.yaml").read_text())
    doc["metadata"]["name"] = f"{doc['metadata']['name']}-{suffix}"
    doc["spec"]["rotation"] = {"gracePeriod": f"{GRACE:g}s", "interval": f"{INTERVAL:g}s"}
    return doc


def _install(pg: PostgresServer, maria: MariaDBServer) -> tuple[str, str]:
    pg_dsn = install_postgres_procedures(pg, DB, ab=True)
    maria.create_database(DB)
    for name in ("procedures.sql", "procedures-ab.sql"):
        maria.sql(file=SAMPLES / "mariadb" / name, database=DB)
    maria.sql(
        f"INSERT INTO dbaas_settings VALUES ('host', '127.0.0.1'), ('port', '{maria.port}') "
        "ON DUPLICATE KEY UPDATE value = VALUES(value)",
        database=DB,
    )
    return pg_dsn, maria.dsn_for(DB)


@pytest.fixture(scope="module")
def env(
    kube: KubeTools,
    crds: Path,
    postgres: PostgresServer,
    mariadb: MariaDBServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    suffix = secrets.token_hex(3)
    system = kube.create_namespace(f"dbaas-sys-{suffix}")
    ns = kube.create_namespace(f"live-{suffix}")
    pg_dsn, maria_dsn = _install(postgres, mariadb)
    classes = [_class("postgres", suffix), _class("mariadb", suffix)]
    config = operator_config(
        "dbaasctl",
        system,
        [
            (classes[0]["metadata"]["name"], [{"name": "pg-ab", "dsn": pg_dsn}]),
            (classes[1]["metadata"]["name"], [{"name": "maria-ab", "dsn": maria_dsn}]),
        ],
    )
    apply(kube, *classes, config)
    operator = OperatorProcess(
        kube.kubeconfig, system, tmp_path_factory.mktemp("operator"), extra_args=[f"--watch-namespaces={ns}"]
    )
    operator.start()
    try:
        yield Env(kube, Observer(kube, operator), operator, ns)
    finally:
        kube.kubectl("delete", "databases", "--all", "-n", ns, "--timeout=90s", check=False)
        operator.stop()
        kube.kubectl("delete", "namespace", ns, system, "--wait=false", check=False)
        for cls in classes:
            kube.kubectl("delete", "databaseclass", cls["metadata"]["name"], "--wait=false", check=False)


def _pg() -> Dbms:
    async def connect(c: dict[str, str]) -> Any:
        return await asyncpg.connect(
            host=c["host"], port=int(c["port"]), user=c["username"], password=c["password"],
            database=c["database"], timeout=10,
        )  # fmt: skip

    async def query(conn: Any) -> None:
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_activity") >= 1

    async def close(conn: Any) -> None:
        await conn.close(timeout=5)

    def refused(exc: BaseException) -> bool:
        return isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError)

    return Dbms(connect, query, close, refused)


def _maria() -> Dbms:
    async def connect(c: dict[str, str]) -> Any:
        return await aiomysql.connect(
            host=c["host"], port=int(c["port"]), user=c["username"], password=c["password"],
            db=c["database"], connect_timeout=10, autocommit=True,
        )  # fmt: skip

    async def query(conn: Any) -> None:
        async with conn.cursor() as cur:
            await cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA")
            assert (await cur.fetchone())[0] >= 1

    async def close(conn: Any) -> None:
        conn.close()

    def refused(exc: BaseException) -> bool:
        # 1045 access denied; 4151 account locked (MariaDB), 3118 (MySQL).
        return isinstance(exc, pymysql.err.OperationalError) and exc.args[0] in (1045, 4151, 3118)

    return Dbms(connect, query, close, refused)


def _settled(obs: Observer, ns: str, name: str, generation: int) -> Any:
    """Generation `generation` is in the Secret, its predecessor retired, Ready=True."""

    def check() -> dict[str, Any] | None:
        db = obs.db(ns, name)
        status = (db or {}).get("status") or {}
        ready = Observer.ready_of(db)
        done = (
            int(status.get("credentialGeneration") or 0) >= generation
            and not status.get("previousCredentialsRetireAt")
            and not status.get("pendingOperation")
        )
        return db if done and ready is not None and ready[0] == "True" else None

    return obs.wait(f"{ns}/{name} generation {generation} with its predecessor retired", check, 120)


@pytest.mark.parametrize(("dbms", "endpoint"), [("postgres", "pg-ab"), ("mariadb", "maria-ab")])
async def test_live_client_sees_no_failure_through_rotations(env: Env, dbms: str, endpoint: str) -> None:
    ns, name = env.namespace, f"live-{dbms}"
    driver = _pg() if dbms == "postgres" else _maria()
    apply(env.kube, database(name, ns, endpoint))
    await asyncio.to_thread(_settled, env.obs, ns, name, 1)
    async with kube_client(env.kube.kubeconfig) as kube:
        client = LiveClient(kube, ns, f"{name}-credentials", driver)
        await client.start()
        try:
            await asyncio.sleep(1.0)
            annotate = ("annotate", "db", "-n", ns, name, "dbaasctl.io/rotate=live-1", "--overwrite")
            await asyncio.to_thread(env.kube.kubectl, *annotate)
            await asyncio.to_thread(_settled, env.obs, ns, name, 2)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(env.kube.kubectl, "delete", "secret", "-n", ns, f"{name}-credentials")
            await asyncio.to_thread(_settled, env.obs, ns, name, 3)
            # The schedule: the class's interval elapses with nothing else asking.
            await asyncio.to_thread(_settled, env.obs, ns, name, 4)
            await asyncio.sleep(1.0)
        finally:
            await client.stop()
    print("\n" + client.report(f"{dbms} (gracePeriod {GRACE:g}s, interval {INTERVAL:g}s)"))

    whys = [e.get("note", "") for e in env.obs.events(ns, name) if e.get("reason") == "Rotated"]
    assert any("annotation" in w for w in whys), whys
    assert any("is missing" in w for w in whys), whys
    assert any("interval elapsed" in w for w in whys), whys
    for tally in (client.fresh, client.pooled, client.prepinged):
        assert tally.login_failures == 0, tally.failures
    for tally in (client.fresh, client.pooled):
        assert tally.query_failures == 0, tally.failures
    assert client.fresh.logins > 100
    assert len(client.overlaps) >= 3
    for overlap in client.overlaps:
        # The old credentials stop working only after retire, and then they do stop.
        assert overlap.seconds is not None, f"{overlap.old_user} still logs in"
        assert overlap.seconds >= GRACE - 0.5, client.report(dbms)  # less only the client's poll lag
    # Following the Secret, the pool moved to each new login inside the grace period: retire found
    # none of its sessions to end.
    assert client.pooled.recycled == len(client.overlaps), client.report(dbms)
    assert client.pooled.reconnects == 0, client.report(dbms)
    # Ignoring the Secret, the pool kept each superseded login until retire ended its session; at most
    # the one query in flight at that instant failed.
    assert client.prepinged.reconnects == len(client.overlaps), client.report(dbms)
    assert client.prepinged.query_failures <= client.prepinged.reconnects, client.prepinged.failures
