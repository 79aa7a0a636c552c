"""The sample procedures in deploy/samples really provision: databases, logins, rotation, deletion."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiomysql
import asyncpg
import pymysql
import pytest

from dbaasctl.dbms.drivers import Driver, ProcedureError, create_driver
from dbaasctl.dbms.dsn_parse import parse_dsn
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.fixtures_dbms import SAMPLES
from testbed.logins import pg_login

DB = "dbaas"


@pytest.fixture(scope="module")
def pg_samples(postgres: PostgresServer) -> PostgresServer:
    postgres.create_database(DB)
    postgres.psql(
        file=SAMPLES / "postgres" / "procedures.sql",
        database=DB,
        variables={"loopback_user": postgres.admin_user, "loopback_password": postgres.admin_password},
    )
    return postgres


@pytest.fixture(scope="module")
def maria_samples(mariadb: MariaDBServer) -> MariaDBServer:
    mariadb.create_database(DB)
    mariadb.sql(file=SAMPLES / "mariadb" / "procedures.sql", database=DB)
    mariadb.sql(
        f"INSERT INTO dbaas_settings VALUES ('host', '127.0.0.1'), ('port', '{mariadb.port}') "
        "ON DUPLICATE KEY UPDATE value = VALUES(value)",
        database=DB,
    )
    return mariadb


@pytest.fixture
async def pg(pg_samples: PostgresServer) -> AsyncIterator[Driver]:
    d = create_driver("postgres", parse_dsn(pg_samples.dsn_for(DB)))
    yield d
    await d.close()


@pytest.fixture
async def maria(maria_samples: MariaDBServer) -> AsyncIterator[Driver]:
    d = create_driver("mariadb", parse_dsn(maria_samples.dsn_for(DB)))
    yield d
    await d.close()


KEYS = {"username", "password", "database", "dbName", "host", "port"}


async def test_postgres_lifecycle(pg: Driver, pg_samples: PostgresServer) -> None:
    inputs = {"k8sNamespace": "shop", "k8sName": "orders-db"}
    creds = await pg.call("dbaas.create_database", inputs, timeout=30, expect_rows=True)
    assert set(creds) == KEYS
    assert creds["database"] == creds["dbName"]
    assert creds["host"] == "127.0.0.1"
    conn = await pg_login(creds)
    await conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    assert await conn.fetchval("SELECT count(*) FROM t") == 1
    await conn.close()

    again = await pg.call("dbaas.create_database", inputs, timeout=30, expect_rows=True)  # idempotent
    assert again["database"] == creds["database"]
    conn = await pg_login(again)
    assert await conn.fetchval("SELECT count(*) FROM t") == 1  # same database, data kept
    await conn.close()

    rotated = await pg.call("dbaas.rotate_password", inputs, timeout=30, expect_rows=True)
    assert set(rotated) == KEYS
    assert rotated["password"] != again["password"]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await pg_login(again)
    await (await pg_login(rotated)).close()

    await pg.call("dbaas.drop_database", inputs, timeout=30, expect_rows=False)
    await pg.call("dbaas.drop_database", inputs, timeout=30, expect_rows=False)  # twice is fine
    name = creds["database"]
    assert (
        pg_samples.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'", database=DB).strip()
        == "0"
    )
    assert (
        pg_samples.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{name}'", database=DB).strip() == "0"
    )
    with pytest.raises(ProcedureError, match="does not exist"):
        await pg.call("dbaas.rotate_password", inputs, timeout=30, expect_rows=True)


async def test_postgres_same_name_in_two_namespaces(pg: Driver) -> None:
    a = await pg.call(
        "dbaas.create_database", {"k8sNamespace": "team-a", "k8sName": "app"}, timeout=30, expect_rows=True
    )
    b = await pg.call(
        "dbaas.create_database", {"k8sNamespace": "team-b", "k8sName": "app"}, timeout=30, expect_rows=True
    )
    assert a["database"] != b["database"]
    assert a["username"] != b["username"]
    conn = await pg_login(a)
    await conn.execute("CREATE TABLE only_in_a (x int)")
    await conn.close()
    conn = await pg_login(b)
    assert await conn.fetchval("SELECT to_regclass('only_in_a') IS NULL")
    await conn.close()
    # tenants cannot reach each other's database
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pg_login({**b, "database": a["database"]})
    for ns in ("team-a", "team-b"):
        await pg.call(
            "dbaas.drop_database", {"k8sNamespace": ns, "k8sName": "app"}, timeout=30, expect_rows=False
        )


async def maria_login(creds: dict[str, str]) -> aiomysql.Connection:
    return await aiomysql.connect(
        host=creds["host"],
        port=int(creds["port"]),
        user=creds["username"],
        password=creds["password"],
        db=creds["database"],
        connect_timeout=10,
        autocommit=True,
    )


async def test_mariadb_lifecycle(maria: Driver, maria_samples: MariaDBServer) -> None:
    inputs = {"0": "shop", "1": "orders-db"}
    creds = await maria.call("dbaas_create", inputs, timeout=30, expect_rows=True)
    assert set(creds) == KEYS
    conn = await maria_login(creds)
    async with conn.cursor() as cur:
        await cur.execute("CREATE TABLE t (id INT)")
        await cur.execute("INSERT INTO t VALUES (1)")
    conn.close()

    again = await maria.call("dbaas_create", inputs, timeout=30, expect_rows=True)
    conn = await maria_login(again)
    async with conn.cursor() as cur:
        await cur.execute("SELECT COUNT(*) FROM t")
        assert (await cur.fetchone()) == (1,)
    conn.close()

    rotated = await maria.call("dbaas_rotate", inputs, timeout=30, expect_rows=True)
    assert rotated["password"] != again["password"]
    with pytest.raises(pymysql.err.OperationalError):
        await maria_login(again)
    (await maria_login(rotated)).close()

    await maria.call("dbaas_delete", inputs, timeout=30, expect_rows=False)
    await maria.call("dbaas_delete", inputs, timeout=30, expect_rows=False)
    name = creds["database"]
    assert (
        maria_samples.sql(
            f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"
        ).strip()
        == "0"
    )
    assert maria_samples.sql(f"SELECT COUNT(*) FROM mysql.user WHERE User = '{name}'").strip() == "0"
    with pytest.raises(ProcedureError, match="no database"):
        await maria.call("dbaas_rotate", inputs, timeout=30, expect_rows=True)


async def test_mariadb_same_name_in_two_namespaces(maria: Driver) -> None:
    a = await maria.call("dbaas_create", {"0": "team-a", "1": "app"}, timeout=30, expect_rows=True)
    b = await maria.call("dbaas_create", {"0": "team-b", "1": "app"}, timeout=30, expect_rows=True)
    assert a["database"] != b["database"]
    with pytest.raises(pymysql.err.OperationalError):  # b's login has no access to a's database
        await maria_login({**b, "database": a["database"]})
    for ns in ("team-a", "team-b"):
        await maria.call("dbaas_delete", {"0": ns, "1": "app"}, timeout=30, expect_rows=False)
