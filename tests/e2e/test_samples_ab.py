"""The two-phase (A/B) sample procedures in deploy/samples really rotate without breaking a client: both
logins work between rotate and retire, objects keep their owner and grants whichever login is in use,
retire refuses the superseded login and ends its sessions, never touches the one in use, and may run
twice. The classes in databaseclass-ab.yaml pass exactly these inputs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pymysql
import pytest
import yaml

from dbaasctl.api.database import Database
from dbaasctl.api.databaseclass import DatabaseClass
from dbaasctl.cli import main
from dbaasctl.dbms.drivers import Driver, create_driver
from dbaasctl.dbms.dsn_parse import parse_dsn
from dbaasctl.templates import TemplateContext, render_inputs
from testbed.dbms import MariaDBServer, PostgresServer
from testbed.fixtures_dbms import SAMPLES
from testbed.logins import pg_login

DB = "dbaas_ab"
NAMESPACE, NAME = "shop", "orders-ab"


def _class(dbms: str) -> DatabaseClass:
    return DatabaseClass.model_validate(
        yaml.safe_load((SAMPLES / dbms / "databaseclass-ab.yaml").read_text())
    )


def _inputs(
    klass: DatabaseClass, op: str, previous: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The procedure and inputs the operator passes for `op`, rendered from the sample class."""
    db = Database.model_validate(
        {"metadata": {"name": NAME, "namespace": NAMESPACE}, "spec": {"endpoint": "x"}}
    )
    operation = klass.spec.operations.get(op)  # type: ignore[arg-type]
    assert operation is not None
    ctx = TemplateContext.from_database(db).with_previous(previous or {})
    return operation.name, render_inputs(operation.inputs, ctx)


async def _call(d: Driver, klass: DatabaseClass, op: str, previous: dict[str, str] | None = None) -> Any:
    procedure, inputs = _inputs(klass, op, previous)
    return await d.call(procedure, inputs, timeout=30, expect_rows=op in ("create", "rotate"))


def _load(server: PostgresServer | MariaDBServer, dbms: str) -> None:
    for name in ("procedures.sql", "procedures-ab.sql"):
        path: Path = SAMPLES / dbms / name
        if isinstance(server, PostgresServer):
            server.psql(
                file=path,
                database=DB,
                variables={"loopback_user": server.admin_user, "loopback_password": server.admin_password},
            )
        else:
            server.sql(file=path, database=DB)


@pytest.fixture(scope="module")
def pg_ab(postgres: PostgresServer) -> PostgresServer:
    postgres.create_database(DB)
    _load(postgres, "postgres")
    return postgres


@pytest.fixture(scope="module")
def maria_ab(mariadb: MariaDBServer) -> MariaDBServer:
    mariadb.create_database(DB)
    _load(mariadb, "mariadb")
    mariadb.sql(
        f"INSERT INTO dbaas_settings VALUES ('host', '127.0.0.1'), ('port', '{mariadb.port}') "
        "ON DUPLICATE KEY UPDATE value = VALUES(value)",
        database=DB,
    )
    return mariadb


@pytest.fixture
async def pg(pg_ab: PostgresServer) -> AsyncIterator[Driver]:
    d = create_driver("postgres", parse_dsn(pg_ab.dsn_for(DB)))
    yield d
    await d.close()


@pytest.fixture
async def maria(maria_ab: MariaDBServer) -> AsyncIterator[Driver]:
    d = create_driver("mariadb", parse_dsn(maria_ab.dsn_for(DB)))
    yield d
    await d.close()


async def _pg_refused(creds: dict[str, str]) -> bool:
    try:
        conn = await pg_login(creds)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        return True
    await conn.close()
    return False


async def test_postgres_ab_rotation(pg: Driver) -> None:
    klass = _class("postgres")
    a = await _call(pg, klass, "create")
    assert a["username"].endswith("_a")
    conn_a = await pg_login(a)
    await conn_a.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    owner = await conn_a.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 't'")
    assert owner == a["database"]  # the owner role, not the login

    b = await _call(pg, klass, "rotate", previous=a)
    assert b["username"].endswith("_b")
    assert b["database"] == a["database"]
    again = await _call(pg, klass, "rotate", previous=a)  # a repeated rotate: the same partner again
    assert again["username"] == b["username"]
    b = again
    assert await conn_a.fetchval("SELECT 1") == 1  # the pooled session of the login in use survives
    conn_b = await pg_login(b)  # both log in during the grace period
    await (await pg_login(a)).close()
    await conn_b.execute("INSERT INTO t VALUES (2); ALTER TABLE t ADD COLUMN note text")  # owner rights
    assert await conn_b.fetchval("SELECT count(*) FROM t") == 2

    await _call(pg, klass, "retire", previous=a)
    assert await _pg_refused(a)
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)):
        await conn_a.fetchval("SELECT 1")  # its sessions were ended
    assert await conn_b.fetchval("SELECT count(*) FROM t") == 2
    await _call(pg, klass, "retire", previous=a)  # twice is fine, and never the login in use
    await _call(pg, klass, "retire", previous={})
    assert await conn_b.fetchval("SELECT 1") == 1
    await conn_b.close()

    a2 = await _call(pg, klass, "rotate", previous=b)  # back to A, with a new password
    assert a2["username"] == a["username"]
    assert await _pg_refused(a)
    await (await pg_login(a2)).close()
    await _call(pg, klass, "retire", previous=b)
    assert await _pg_refused(b)

    await _call(pg, klass, "delete")
    await _call(pg, klass, "delete")
    assert await _pg_refused(a2)


async def _maria_login(creds: dict[str, str]) -> aiomysql.Connection:
    return await aiomysql.connect(
        host=creds["host"],
        port=int(creds["port"]),
        user=creds["username"],
        password=creds["password"],
        db=creds["database"],
        connect_timeout=10,
        autocommit=True,
    )


async def _maria_refused(creds: dict[str, str]) -> bool:
    try:
        conn = await _maria_login(creds)
    except pymysql.err.OperationalError:
        return True
    conn.close()
    return False


async def _maria_query(conn: aiomysql.Connection, sql: str) -> Any:
    async with conn.cursor() as cur:
        await cur.execute(sql)
        return await cur.fetchall()


async def test_mariadb_ab_rotation(maria: Driver) -> None:
    klass = _class("mariadb")
    a = await _call(maria, klass, "create")
    assert a["username"].endswith("_a")
    conn_a = await _maria_login(a)
    await _maria_query(conn_a, "CREATE TABLE t (id INT)")
    await _maria_query(conn_a, "INSERT INTO t VALUES (1)")

    b = await _call(maria, klass, "rotate", previous=a)
    assert b["username"].endswith("_b")
    again = await _call(maria, klass, "rotate", previous=a)
    assert again["username"] == b["username"]
    b = again
    assert await _maria_query(conn_a, "SELECT 1") == ((1,),)
    conn_b = await _maria_login(b)
    (await _maria_login(a)).close()
    await _maria_query(conn_b, "INSERT INTO t VALUES (2)")
    await _maria_query(conn_b, "ALTER TABLE t ADD COLUMN note TEXT")
    assert await _maria_query(conn_b, "SELECT COUNT(*) FROM t") == ((2,),)

    await _call(maria, klass, "retire", previous=a)
    assert await _maria_refused(a)
    with pytest.raises(pymysql.err.OperationalError):
        await _maria_query(conn_a, "SELECT 1")  # its connections were ended
    conn_a.close()
    await _call(maria, klass, "retire", previous=a)
    await _call(maria, klass, "retire", previous={})
    assert await _maria_query(conn_b, "SELECT COUNT(*) FROM t") == ((2,),)
    conn_b.close()

    a2 = await _call(maria, klass, "rotate", previous=b)
    assert a2["username"] == a["username"]
    assert await _maria_refused(a)
    (await _maria_login(a2)).close()
    await _call(maria, klass, "retire", previous=b)
    assert await _maria_refused(b)

    await _call(maria, klass, "delete")
    await _call(maria, klass, "delete")
    assert await _maria_refused(a2)


def _check_files(tmp_path: Path, pg_ab: PostgresServer, maria_ab: MariaDBServer, pg_class: Any) -> list[str]:
    maria_class = yaml.safe_load((SAMPLES / "mariadb" / "databaseclass-ab.yaml").read_text())
    config = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "dbaasctl", "namespace": "dbaasctl-system"},
        "spec": {
            "dbms": [
                {
                    "databaseClassName": "postgres-sample-ab",
                    "endpoints": [{"name": "pg", "dsn": pg_ab.dsn_for(DB)}],
                },
                {
                    "databaseClassName": "mariadb-sample-ab",
                    "endpoints": [{"name": "maria", "dsn": maria_ab.dsn_for(DB)}],
                },
            ]
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump_all([pg_class, maria_class]))
    return ["-f", str(tmp_path / "config.yaml"), "-f", str(tmp_path / "classes.yaml")]


def test_check_passes_on_the_ab_samples_and_covers_retire(
    tmp_path: Path, pg_ab: PostgresServer, maria_ab: MariaDBServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pg_class = yaml.safe_load((SAMPLES / "postgres" / "databaseclass-ab.yaml").read_text())
    code = main(["check", *_check_files(tmp_path, pg_ab, maria_ab, pg_class)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    lines = [line for line in out.out.splitlines()[1:] if line.strip()]
    assert len(lines) == 8, out.out  # create, rotate, delete, retire on each endpoint
    assert all("  ok  " in line for line in lines), out.out

    pg_class["spec"]["operations"]["retire"]["name"] = "dbaas.retire_abb"
    code = main(["check", *_check_files(tmp_path, pg_ab, maria_ab, pg_class)])
    out = capsys.readouterr()
    assert code == 1
    (line,) = [line for line in out.out.splitlines() if "PROBLEM" in line]
    assert "retire" in line
    assert "dbaas.retire_abb not found" in line
