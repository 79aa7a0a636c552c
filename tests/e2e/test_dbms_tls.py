"""TLS posture of DBMS links, read from the live connection, and the policy that refuses weaker links.

PostgreSQL and MariaDB run with TLS on, their certificates signed by a throw-away CA: a client that
trusts the CA is `verified`, one that encrypts without checking is `encrypted`, and the session servers
(TLS off) give `plaintext`, which a `tls_minimum` refuses before any procedure runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.dbms.drivers import ProcedureError, Reason
from dbaasctl.dbms.endpoints import EndpointRegistry, EndpointSpec
from dbaasctl.dbms.tls import TlsState
from testbed.dbms import MariaDBServer, OdbcDrivers, PostgresServer

PG_SETUP = """
CREATE SCHEMA IF NOT EXISTS ct;
CREATE TABLE IF NOT EXISTS ct.calls (n int);
CREATE OR REPLACE FUNCTION ct.touch(a text) RETURNS TABLE(key text, value text)
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ct.calls VALUES (1); RETURN QUERY SELECT 'a'::text, a; END $$;
"""
MARIA_SETUP = """
CREATE DATABASE IF NOT EXISTS tlsdb;
CREATE TABLE IF NOT EXISTS tlsdb.calls (n int);
DROP PROCEDURE IF EXISTS tlsdb.touch;
DELIMITER //
CREATE PROCEDURE tlsdb.touch(IN a TEXT) BEGIN INSERT INTO tlsdb.calls VALUES (1); SELECT 'a' AS `key`, a AS `value`; END //
DELIMITER ;
"""


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[PostgresServer]:
    with PostgresServer(tls=True) as server:
        server.psql(PG_SETUP)
        yield server


@pytest.fixture(scope="module")
def tls_mariadb() -> Iterator[MariaDBServer]:
    with MariaDBServer(tls=True) as server:
        server.sql(MARIA_SETUP)
        yield server


def _with(dsn: str, **options: str) -> str:
    return dsn + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in options.items())


async def _state(
    driver: str, dsn: str, minimum: TlsState = TlsState.PLAINTEXT
) -> tuple[TlsState, bool | None, dict[str, float | None]]:
    """(observed state, healthy, dbaasctl_endpoint_tls by state) after one check."""
    metrics = CollectorRegistry()
    reg = EndpointRegistry(registry=metrics)
    try:
        await reg.apply(
            [EndpointSpec("ep", driver, dsn, keepalive=0, connect_timeout=5, tls_minimum=minimum)]
        )
        health = await reg.check("ep")
        gauge = {
            s.value: metrics.get_sample_value("dbaasctl_endpoint_tls", {"endpoint": "ep", "state": s.value})
            for s in TlsState
        }
        return health.tls, health.healthy, gauge
    finally:
        await reg.close()


async def test_postgres_verified_with_the_ca(tls_postgres: PostgresServer) -> None:
    assert tls_postgres.tls is not None
    dsn = _with(tls_postgres.dsn, sslmode="verify-full", sslrootcert=str(tls_postgres.tls.ca_cert))
    state, healthy, metrics = await _state("postgres", dsn, TlsState.VERIFIED)
    assert (state, healthy) == (TlsState.VERIFIED, True)
    assert metrics == {"verified": 1, "encrypted": 0, "plaintext": 0, "unknown": 0}


async def test_postgres_encrypted_but_unverified(tls_postgres: PostgresServer) -> None:
    for mode in ("require", "prefer"):
        state, healthy, _ = await _state("postgres", _with(tls_postgres.dsn, sslmode=mode))
        assert (state, healthy) == (TlsState.ENCRYPTED, True), mode
    # a verified policy refuses it, and says why
    state, healthy, _ = await _state(
        "postgres", _with(tls_postgres.dsn, sslmode="require"), TlsState.VERIFIED
    )
    assert (state, healthy) == (TlsState.ENCRYPTED, False)


async def test_postgres_prefer_against_a_plain_server_is_plaintext(postgres: PostgresServer) -> None:
    state, healthy, metrics = await _state("postgres", postgres.dsn)  # asyncpg's default: sslmode=prefer
    assert (state, healthy) == (TlsState.PLAINTEXT, True)
    assert metrics["plaintext"] == 1
    assert metrics["verified"] == 0


async def test_mariadb_verified_encrypted_plaintext(
    tls_mariadb: MariaDBServer, mariadb: MariaDBServer
) -> None:
    assert tls_mariadb.tls is not None
    verified = _with(
        tls_mariadb.dsn, **{"ssl-ca": str(tls_mariadb.tls.ca_cert), "ssl-mode": "VERIFY_IDENTITY"}
    )
    assert (await _state("mariadb", verified, TlsState.VERIFIED))[:2] == (TlsState.VERIFIED, True)
    required = _with(tls_mariadb.dsn, **{"ssl-mode": "REQUIRED"})
    assert (await _state("mariadb", required))[:2] == (TlsState.ENCRYPTED, True)
    assert (await _state("mariadb", mariadb.dsn))[:2] == (TlsState.PLAINTEXT, True)


@pytest.mark.parametrize("keepalive", [0.0, 0.2])
async def test_plaintext_refused_by_policy_without_calling_the_procedure(
    postgres: PostgresServer, mariadb: MariaDBServer, keepalive: float
) -> None:
    """keepalive 0: the first call finds the link itself; with keepalive the registry already knows."""
    postgres.psql(PG_SETUP)
    postgres.psql("TRUNCATE ct.calls")
    mariadb.sql(MARIA_SETUP)
    mariadb.sql("TRUNCATE tlsdb.calls")
    reg = EndpointRegistry(registry=CollectorRegistry())
    try:
        await reg.apply(
            [
                EndpointSpec(
                    "pg", "postgres", postgres.dsn, keepalive=keepalive, tls_minimum=TlsState.ENCRYPTED
                ),
                EndpointSpec(
                    "my",
                    "mariadb",
                    mariadb.dsn_for("tlsdb"),
                    keepalive=keepalive,
                    tls_minimum=TlsState.ENCRYPTED,
                ),
            ]
        )
        if keepalive:
            await reg.check("pg")
            await reg.check("my")
        for endpoint, procedure, inputs in (("pg", "ct.touch", {"a": "x"}), ("my", "touch", {"0": "x"})):
            with pytest.raises(ProcedureError) as err:
                await reg.run(endpoint, procedure, inputs, expect_rows=True)
            assert err.value.reason is Reason.TLS_REFUSED, str(err.value)
            assert "plaintext" in err.value.message
            assert "encrypted" in err.value.message
            health = reg.health()[endpoint]
            assert health.healthy is False
            assert health.tls is TlsState.PLAINTEXT
            assert health.last_error
            assert "TLS policy" in health.last_error
    finally:
        await reg.close()
    assert postgres.psql("SELECT count(*) FROM ct.calls").strip() == "0"
    assert mariadb.sql("SELECT count(*) FROM tlsdb.calls").strip() == "0"


async def test_policy_met_calls_go_through(tls_postgres: PostgresServer, tls_mariadb: MariaDBServer) -> None:
    assert tls_postgres.tls is not None
    assert tls_mariadb.tls is not None
    reg = EndpointRegistry(registry=CollectorRegistry())
    try:
        await reg.apply(
            [
                EndpointSpec(
                    "pg",
                    "postgres",
                    _with(tls_postgres.dsn, sslmode="verify-full", sslrootcert=str(tls_postgres.tls.ca_cert)),
                    keepalive=0,
                    tls_minimum=TlsState.VERIFIED,
                ),
                EndpointSpec(
                    "my",
                    "mariadb",
                    _with(tls_mariadb.dsn_for("tlsdb"), **{"ssl-ca": str(tls_mariadb.tls.ca_cert)}),
                    keepalive=0,
                    tls_minimum=TlsState.VERIFIED,
                ),
            ]
        )
        assert await reg.run("pg", "ct.touch", {"a": "x"}, expect_rows=True) == {"a": "x"}
        assert await reg.run("my", "touch", {"0": "y"}, expect_rows=True) == {"a": "y"}
        assert reg.health()["pg"].tls is TlsState.VERIFIED
        assert reg.health()["my"].tls is TlsState.VERIFIED
    finally:
        await reg.close()


async def test_odbc_reports_the_servers_view_never_verified(
    tls_postgres: PostgresServer,
    tls_mariadb: MariaDBServer,
    postgres: PostgresServer,
    mariadb: MariaDBServer,
    odbc_drivers: OdbcDrivers,
) -> None:
    """ODBC hides the socket: the server says whether the session is encrypted; verification is unknowable."""
    cases = [
        (
            tls_postgres.odbc_connection_string(driver=odbc_drivers.postgres) + "SSLmode=require;",
            TlsState.ENCRYPTED,
        ),
        (
            postgres.odbc_connection_string(driver=odbc_drivers.postgres) + "SSLmode=disable;",
            TlsState.PLAINTEXT,
        ),
        (tls_mariadb.odbc_connection_string(driver=odbc_drivers.mariadb) + "FORCETLS=1;", TlsState.ENCRYPTED),
        (mariadb.odbc_connection_string(driver=odbc_drivers.mariadb), TlsState.PLAINTEXT),
    ]
    for conn, expected in cases:
        state, healthy, metrics = await _state("odbc", "odbc:" + conn)
        assert (state, healthy) == (expected, True), conn.split(";")[0]
        assert metrics[expected.value] == 1
        # a verified policy can never be met through ODBC
        state, healthy, _ = await _state("odbc", "odbc:" + conn, TlsState.VERIFIED)
        assert (state, healthy) == (expected, False)


async def test_odbc_plaintext_refused_without_calling_the_procedure(
    postgres: PostgresServer, odbc_drivers: OdbcDrivers
) -> None:
    postgres.psql(PG_SETUP)
    postgres.psql("TRUNCATE ct.calls")
    conn = "odbc:" + postgres.odbc_connection_string(driver=odbc_drivers.postgres) + "SSLmode=disable;"
    reg = EndpointRegistry(registry=CollectorRegistry())
    try:
        await reg.apply([EndpointSpec("pg", "odbc", conn, keepalive=0, tls_minimum=TlsState.ENCRYPTED)])
        with pytest.raises(ProcedureError) as err:
            await reg.run("pg", "ct.touch", {"0": "x"}, expect_rows=True)
        assert err.value.reason is Reason.TLS_REFUSED, str(err.value)
        assert reg.health()["pg"].tls is TlsState.PLAINTEXT
    finally:
        await reg.close()
    assert postgres.psql("SELECT count(*) FROM ct.calls").strip() == "0"
