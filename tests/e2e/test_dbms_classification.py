"""Each DBMS failure gets its true reason: a procedure's own error is not a signature mismatch, a refused
login is not an unreachable server, a missing schema or ODBC driver says so, and an endpoint whose
client library cannot be loaded is unhealthy."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.dbms.drivers import ProcedureError, Reason, create_driver
from dbaasctl.dbms.drivers.mysql import MySQLDriver
from dbaasctl.dbms.drivers.postgres import PostgresDriver
from dbaasctl.dbms.dsn_parse import parse_dsn
from dbaasctl.dbms.endpoints import EndpointRegistry, EndpointSpec
from testbed.dbms import MariaDBServer, OdbcDrivers, PostgresServer

DB = "classify"
PG_SQL = """
CREATE SCHEMA IF NOT EXISTS cl;
-- calls a function from an extension that is not installed: 42883 raised inside the procedure
CREATE OR REPLACE FUNCTION cl.needs_pgcrypto(a text) RETURNS TABLE(key text, value text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY SELECT 'password'::text, encode(gen_random_bytes(8), 'hex');
END $$;
CREATE OR REPLACE FUNCTION cl.echo(a text) RETURNS TABLE(key text, value text)
LANGUAGE sql AS $$ SELECT 'a'::text, a $$;
"""


@pytest.fixture(scope="module")
def pg(postgres: PostgresServer) -> PostgresServer:
    postgres.create_database(DB)
    postgres.psql(PG_SQL, database=DB)
    return postgres


async def _pg_error(dsn: str, procedure: str, inputs: dict[str, str]) -> ProcedureError:
    d = PostgresDriver(parse_dsn(dsn), max_connections=1, connect_timeout=5)
    try:
        with pytest.raises(ProcedureError) as err:
            await d.call(procedure, inputs, timeout=10, expect_rows=True)
        return err.value
    finally:
        await d.close()


async def test_undefined_function_inside_the_procedure_is_its_own_failure(pg: PostgresServer) -> None:
    err = await _pg_error(pg.dsn_for(DB), "cl.needs_pgcrypto", {"a": "x"})
    assert err.sqlstate == "42883"
    assert err.reason is Reason.PROCEDURE_FAILED, str(err)
    assert "gen_random_bytes" in err.message


async def test_signature_mismatch_is_still_wrong_parameters(pg: PostgresServer) -> None:
    err = await _pg_error(pg.dsn_for(DB), "cl.echo", {"b": "x"})
    assert err.reason is Reason.WRONG_PARAMETERS
    err = await _pg_error(pg.dsn_for(DB), "cl.nothing", {"a": "x"})
    assert err.reason is Reason.PROCEDURE_NOT_FOUND


async def test_missing_schema_says_so(pg: PostgresServer) -> None:
    err = await _pg_error(pg.dsn_for(DB), "no_such_schema.fn", {"a": "x"})
    assert err.sqlstate == "3F000"
    assert err.reason is Reason.SCHEMA_NOT_FOUND, str(err)


async def test_postgres_wrong_password_is_authentication_failed(pg: PostgresServer) -> None:
    bad = pg.dsn_for(DB, password="not-the-Password-1")
    err = await _pg_error(bad, "cl.echo", {"a": "x"})
    assert err.reason is Reason.AUTHENTICATION_FAILED, str(err)
    assert err.sqlstate == "28P01"
    assert "not-the-Password-1" not in str(err)
    d = PostgresDriver(parse_dsn(bad), max_connections=1, connect_timeout=5)
    try:
        with pytest.raises(ProcedureError) as ping:
            await d.ping(10)
        assert ping.value.reason is Reason.AUTHENTICATION_FAILED
    finally:
        await d.close()


async def test_mariadb_wrong_password_is_authentication_failed(mariadb: MariaDBServer) -> None:
    d = MySQLDriver(parse_dsn(mariadb.dsn_for("mysql", password="not-the-Password-1")), connect_timeout=5)
    try:
        with pytest.raises(ProcedureError) as err:
            await d.call("anything", {}, timeout=10, expect_rows=True)
        assert err.value.reason is Reason.AUTHENTICATION_FAILED, str(err.value)
        assert "(1045)" in err.value.message
        assert "not-the-Password-1" not in str(err.value)
    finally:
        await d.close()


@pytest.mark.parametrize(
    "driver_attr",
    ["Driver=/nonexistent/libnothing.so", "Driver={No Such ODBC Driver}"],
    ids=["cannot-open-lib", "unknown-driver-name"],
)
async def test_odbc_driver_that_cannot_load_is_a_driver_problem_and_leaves_the_endpoint_down(
    odbc_drivers: OdbcDrivers, driver_attr: str
) -> None:
    conn = f"{driver_attr};Server=127.0.0.1;Port=1;UID=u;PWD={{odbc-Secret-7}};"
    d = create_driver("odbc", parse_dsn("odbc:" + conn), max_connections=1, connect_timeout=3)
    try:
        with pytest.raises(ProcedureError) as err:
            await d.call("p", {}, timeout=10, expect_rows=True)
        assert err.value.reason is Reason.DRIVER_UNAVAILABLE, str(err.value)
        assert err.value.sqlstate in ("01000", "IM002")
        assert "odbc-Secret-7" not in str(err.value)
    finally:
        await d.close()
    reg = EndpointRegistry(registry=CollectorRegistry())
    try:
        await reg.apply([EndpointSpec("odbc", "odbc", "odbc:" + conn, keepalive=0, connect_timeout=3)])
        with pytest.raises(ProcedureError) as err:
            await reg.run("odbc", "p", {}, expect_rows=True)
        assert err.value.reason is Reason.DRIVER_UNAVAILABLE
        assert reg.health()["odbc"].healthy is False
    finally:
        await reg.close()


async def test_open_circuit_still_names_the_cause(pg: PostgresServer) -> None:
    """After a refused login the endpoint is down; calls fail fast and still say authentication failed."""
    reg = EndpointRegistry(registry=CollectorRegistry())
    try:
        bad = pg.dsn_for(DB, password="not-the-Password-1")
        await reg.apply([EndpointSpec("pg", "postgres", bad, keepalive=0, connect_timeout=5)])
        with pytest.raises(ProcedureError) as first:
            await reg.run("pg", "cl.echo", {"a": "x"}, expect_rows=True)
        assert first.value.reason is Reason.AUTHENTICATION_FAILED
        health = reg.health()["pg"]
        assert health.healthy is False
        assert health.last_error
        assert "password authentication failed" in health.last_error
        with pytest.raises(ProcedureError) as fast:
            await reg.run("pg", "cl.echo", {"a": "x"}, expect_rows=True)
        assert fast.value.reason is Reason.ENDPOINT_DOWN
        assert "AuthenticationFailed" in fast.value.message
        assert fast.value.sqlstate == "28P01"
        assert "not-the-Password-1" not in str(fast.value)
    finally:
        await reg.close()


async def test_sqlserver_without_its_odbc_driver_is_a_driver_problem(odbc_drivers: OdbcDrivers) -> None:
    """No SQL Server runs here; what ODBC can show is the driver manager's answer for a missing driver."""
    dsn = "sqlserver://sa:mssql-Secret-3@127.0.0.1:1/master?driver=ODBC%20Driver%2018%20for%20SQL%20Server"
    reg = EndpointRegistry(registry=CollectorRegistry())
    try:
        await reg.apply([EndpointSpec("mssql", "sqlserver", dsn, keepalive=0, connect_timeout=3)])
        health = await reg.check("mssql")
        assert health.healthy is False
        with pytest.raises(ProcedureError) as err:
            await reg.run("mssql", "dbo.create_db", {"k8sName": "x"}, expect_rows=True)
        assert err.value.reason in (Reason.ENDPOINT_DOWN, Reason.DRIVER_UNAVAILABLE)
        assert "DriverUnavailable" in str(err.value)
        assert "mssql-Secret-3" not in str(err.value) + (health.last_error or "")
    finally:
        await reg.close()
