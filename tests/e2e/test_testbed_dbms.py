"""The DBMS side of the test bed is real: servers answer queries through every driver we ship."""

from __future__ import annotations

import aiomysql
import aioodbc
import asyncpg

from testbed.dbms import MariaDBServer, OdbcDrivers, PostgresServer


async def test_asyncpg_queries_postgres(postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        rows = await conn.fetch("SELECT g AS n FROM generate_series(1, 3) AS g")
    finally:
        await conn.close()
    assert version.split(".")[0].isdigit()
    assert [r["n"] for r in rows] == [1, 2, 3]


async def test_aiomysql_queries_mariadb(mariadb: MariaDBServer) -> None:
    conn = await aiomysql.connect(
        host=mariadb.host,
        port=mariadb.port,
        user=mariadb.admin_user,
        password=mariadb.admin_password,
        db="mysql",
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION()")
            (version,) = await cur.fetchone()
            await cur.execute("SELECT seq FROM seq_1_to_3")
            rows = await cur.fetchall()
    finally:
        conn.close()
    assert "MariaDB" in version
    assert [r[0] for r in rows] == [1, 2, 3]


async def _odbc_rows(connection_string: str, sql: str) -> list[tuple[object, ...]]:
    conn = await aioodbc.connect(dsn=connection_string)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            return [tuple(r) for r in await cur.fetchall()]
    finally:
        await conn.close()


async def test_odbc_postgres_driver(postgres: PostgresServer, odbc_drivers: OdbcDrivers) -> None:
    rows = await _odbc_rows(
        postgres.odbc_connection_string(driver=odbc_drivers.postgres),
        "SELECT current_user, 40 + 2",
    )
    assert rows == [(postgres.admin_user, 42)]


async def test_odbc_mariadb_driver(mariadb: MariaDBServer, odbc_drivers: OdbcDrivers) -> None:
    rows = await _odbc_rows(
        mariadb.odbc_connection_string(driver=odbc_drivers.mariadb),
        "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1), 40 + 2",
    )
    assert rows == [(mariadb.admin_user, 42)]
