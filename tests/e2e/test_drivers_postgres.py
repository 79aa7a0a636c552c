"""The stored-procedure contract on a real PostgreSQL through asyncpg (deploy/samples/test/postgres.sql)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from dbms_cases import INJECTION_CORPUS, in_use

from dbaasctl.dbms.drivers import ContractError, ProcedureError, Reason
from dbaasctl.dbms.drivers.postgres import PostgresDriver
from dbaasctl.dbms.dsn_parse import parse_dsn
from testbed.dbms import PostgresServer
from testbed.fixtures_dbms import SAMPLES
from testbed.polling import wait_until

DB = "contract"


@pytest.fixture(scope="module")
def contract_db(postgres: PostgresServer) -> PostgresServer:
    postgres.create_database(DB)
    postgres.psql(file=SAMPLES / "test" / "postgres.sql", database=DB)
    return postgres


@pytest.fixture
async def driver(contract_db: PostgresServer) -> AsyncIterator[PostgresDriver]:
    d = PostgresDriver(parse_dsn(contract_db.dsn_for(DB)), max_connections=4)
    yield d
    assert in_use(d) == 0, "a connection was not returned to the pool"
    await d.close()


async def call(
    d: PostgresDriver, proc: str, inputs: dict[str, str] | None = None, **kw: object
) -> dict[str, str]:
    return await d.call(
        proc, inputs or {}, timeout=float(kw.get("timeout", 10)), expect_rows=bool(kw.get("rows", True))
    )


async def test_named_inputs_and_default(driver: PostgresDriver) -> None:
    assert await call(driver, "ct.echo", {"a": "x", "b": "y"}) == {"a": "x", "b": "y"}
    assert await call(driver, "ct.echo", {"a": "only"}) == {"a": "only", "b": ""}


async def test_names_fold_like_unquoted_identifiers(driver: PostgresDriver) -> None:
    # The reference's classes say k8sName; PostgreSQL stores k8sname.
    assert await call(driver, "CT.Echo_Name", {"k8sName": "db1"}) == {"k8sName": "db1"}


async def test_null_value_is_empty_string(driver: PostgresDriver) -> None:
    assert await call(driver, "ct.with_null") == {"username": "u", "password": ""}


async def test_extra_columns_ignored_and_non_text_converted(driver: PostgresDriver) -> None:
    assert await call(driver, "ct.extra_columns") == {"username": "u", "port": "5432"}
    assert await call(driver, "ct.non_text") == {"port": "5432"}
    assert await call(driver, "ct.empty") == {}


@pytest.mark.parametrize(
    ("procedure", "inputs", "reason", "fragment"),
    [
        ("ct.dup_keys", {}, Reason.DUPLICATE_KEY, "'password' more than once"),
        ("ct.null_key", {}, Reason.BAD_RESULT_SHAPE, "NULL or empty key"),
        ("ct.wrong_shape", {}, Reason.BAD_RESULT_SHAPE, "(name, val)"),
        ("ct.wrong_shape_empty", {}, Reason.BAD_RESULT_SHAPE, "(name, val)"),  # no row names the columns
        ("ct.no_such_function", {}, Reason.PROCEDURE_NOT_FOUND, "does not exist"),
        ("ct.echo", {"nope": "1"}, Reason.WRONG_PARAMETERS, "does not exist"),
        ("ct.raise_error", {"msg": "quota"}, Reason.PROCEDURE_FAILED, "procedure refused: ***"),
        ("ct.error_after_rows", {}, Reason.PROCEDURE_FAILED, "failed after the first row"),
        ("ct.delete_proc", {"k8sname": "p"}, Reason.BAD_RESULT_SHAPE, "cannot return a row set"),
    ],
)
async def test_documented_errors(
    driver: PostgresDriver, procedure: str, inputs: dict[str, str], reason: Reason, fragment: str
) -> None:
    with pytest.raises(ProcedureError) as err:
        await call(driver, procedure, inputs)
    assert err.value.reason is reason, str(err.value)
    assert fragment in str(err.value)
    assert await call(driver, "ct.echo", {"a": "still usable"}) == {"a": "still usable", "b": ""}


async def test_raise_keeps_hint(driver: PostgresDriver) -> None:
    with pytest.raises(ProcedureError, match="ask the DBA"):
        await call(driver, "ct.raise_error", {"msg": "x"})


@pytest.mark.parametrize("name", ["x; DROP TABLE t", "a.b.c", "1abc", "", "ct.echo()", 'ct."echo"', "a" * 64])
async def test_bad_procedure_name_is_a_class_error(driver: PostgresDriver, name: str) -> None:
    with pytest.raises(ContractError) as err:
        await call(driver, name)
    assert err.value.reason is Reason.INVALID_CLASS
    assert driver.stats().size == 0  # refused before any connection


@pytest.mark.parametrize("key", ["a b", "a;--", "0", "x" * 64, 'a"'])
async def test_bad_parameter_name_is_a_class_error(driver: PostgresDriver, key: str) -> None:
    with pytest.raises(ContractError):
        await call(driver, "ct.echo", {key: "v"})


async def test_delete_void_function_and_procedure(
    driver: PostgresDriver, contract_db: PostgresServer
) -> None:
    assert await call(driver, "ct.delete_void", {"k8sname": "v1"}, rows=False) == {}
    assert await call(driver, "ct.delete_proc", {"k8sname": "p1"}, rows=False) == {}
    assert await call(driver, "ct.delete_proc", {"k8sname": "p2"}, rows=False) == {}  # remembered as CALL
    names = contract_db.psql("SELECT string_agg(name, ',' ORDER BY name) FROM ct.deleted", database=DB)
    assert {"v1", "p1", "p2"} <= set(names.strip().split(","))


async def test_hung_procedure_times_out_and_is_cancelled(
    driver: PostgresDriver, contract_db: PostgresServer
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProcedureError) as err:
        await call(driver, "ct.sleep", {"seconds": "120"}, timeout=1.0)
    assert err.value.reason is Reason.OPERATION_TIMEOUT
    assert loop.time() - started < 30
    await wait_until(
        lambda: _active_sleeps(contract_db) == 0, timeout=20, what="server-side statement cancelled"
    )
    assert await call(driver, "ct.echo", {"a": "after"}) == {"a": "after", "b": ""}


async def test_cancelled_call_cancels_server_statement(
    driver: PostgresDriver, contract_db: PostgresServer
) -> None:
    task = asyncio.create_task(call(driver, "ct.sleep", {"seconds": "120"}, timeout=60))
    await wait_until(lambda: _active_sleeps(contract_db) == 1, timeout=20, what="statement running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(
        lambda: _active_sleeps(contract_db) == 0, timeout=20, what="server-side statement cancelled"
    )
    await wait_until(lambda: in_use(driver) == 0, timeout=20, what="connection back in the pool")


def _active_sleeps(server: PostgresServer) -> int:
    out = server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbaasctl' "
        "AND state = 'active' AND query LIKE '%ct%sleep%'",
        database=DB,
    )
    return int(out.strip())


async def test_hundred_thousand_rows(driver: PostgresDriver) -> None:
    out = await call(driver, "ct.many", {"n": "100000"}, timeout=120)
    assert len(out) == 100000
    assert out["k100000"] == "v" * 20 + "100000"


@pytest.mark.parametrize("value", INJECTION_CORPUS, ids=range(len(INJECTION_CORPUS)))
async def test_injection_corpus_round_trips(driver: PostgresDriver, value: str) -> None:
    out = await call(driver, "ct.echo", {"a": value, "b": value[::-1]})
    assert out["a"].encode("utf-8") == value.encode("utf-8")
    assert out["b"] == value[::-1]


async def test_describe_lists_parameters(driver: PostgresDriver) -> None:
    (echo,) = await driver.describe("ct.echo", timeout=10)
    assert [(p.name, p.mode, p.has_default) for p in echo.inputs] == [("a", "IN", False), ("b", "IN", True)]
    assert echo.outputs == ("key", "value")
    (proc,) = await driver.describe("ct.delete_proc", timeout=10)
    assert proc.kind == "procedure"
    assert await driver.describe("ct.nothing_here", timeout=10) == []


async def test_unreachable_server_is_connection_failed() -> None:
    from testbed.dbms import _free_port

    d = PostgresDriver(parse_dsn(f"postgresql://u:secretpw@127.0.0.1:{_free_port()}/x"), connect_timeout=2)
    try:
        with pytest.raises(ProcedureError) as err:
            await d.call("ct.echo", {"a": "1"}, timeout=5, expect_rows=True)
        assert err.value.reason is Reason.CONNECTION_FAILED
        with pytest.raises(ProcedureError) as err2:
            await d.ping(5)
        assert err2.value.reason is Reason.CONNECTION_FAILED
        assert "secretpw" not in str(err.value) + str(err2.value)
    finally:
        await d.close()


# ---- what a keepalive ping costs the server ------------------------------------------------------

_PROBE_SQL = """
CREATE SCHEMA probe;
-- Leaves session state behind (a setting and an advisory lock) that the pool's reset must clear.
CREATE FUNCTION probe.set_state(v text) RETURNS TABLE(key text, value text) LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('dbaasctl.probe', v, false);
  PERFORM pg_advisory_lock(4242);
  RETURN QUERY SELECT 'probe'::text, current_setting('dbaasctl.probe', true);
END $$;
CREATE FUNCTION probe.get_state() RETURNS TABLE(key text, value text) LANGUAGE sql AS $$
  SELECT 'probe'::text, coalesce(current_setting('dbaasctl.probe', true), '')
$$;
"""
_LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] ", re.M)
_LOGGED_SQL = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)", re.S)


@pytest.fixture(scope="module")
def logged_postgres() -> Iterator[PostgresServer]:
    """A private server with log_statement=all: the log is the server-side count of what we send."""
    with PostgresServer(log_statements=True) as server:
        server.psql(_PROBE_SQL)
        yield server


def _log_size(server: PostgresServer) -> int:
    return server.log_path.stat().st_size


def _logged_sql(server: PostgresServer, since: int) -> list[str]:
    """SQL texts the server logged after byte `since`, whitespace-normalised, in order.

    The server writes each entry before it runs the statement, so everything a returned call sent is
    already in the file.
    """
    text = server.log_path.read_bytes()[since:].decode("utf-8", "replace")
    starts = [m.start() for m in _LOG_ENTRY.finditer(text)] + [len(text)]
    entries = (text[a:b] for a, b in itertools.pairwise(starts))
    return [" ".join(m.group(1).split()) for e in entries if (m := _LOGGED_SQL.search(e))]


async def test_keepalive_ping_is_one_statement(logged_postgres: PostgresServer) -> None:
    d = PostgresDriver(parse_dsn(logged_postgres.dsn), max_connections=1)
    try:
        await d.ping(10)  # opens the connection and prepares the statement
        since = _log_size(logged_postgres)
        for _ in range(10):
            await d.ping(10)
        # Without the skip, each ping is followed by asyncpg's 4-statement reset (5 statements a ping).
        assert _logged_sql(logged_postgres, since) == ["SELECT 1"] * 10
    finally:
        await d.close()


async def test_connection_used_by_a_call_is_still_reset(logged_postgres: PostgresServer) -> None:
    d = PostgresDriver(parse_dsn(logged_postgres.dsn), max_connections=1)  # one connection, reused
    try:
        since = _log_size(logged_postgres)
        await d.ping(10)
        assert await call(d, "probe.set_state", {"v": "dirty"}) == {"probe": "dirty"}
        await d.ping(10)
        assert await call(d, "probe.get_state") == {"probe": ""}
        logged = _logged_sql(logged_postgres, since)
        assert sum("RESET ALL" in sql for sql in logged) == 2  # after each call, never after a ping
        assert sum(sql == "SELECT 1" for sql in logged) == 2
        assert d.stats().size == 1
    finally:
        await d.close()
    locks = logged_postgres.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    assert locks.strip() == "0"


async def test_the_calls_own_values_are_masked_in_dbms_errors(
    driver: PostgresDriver, contract_db: PostgresServer
) -> None:
    """`DETAIL: Key (v)=(<value>) already exists` must not carry the bound value out of the driver."""
    contract_db.psql(
        """
        CREATE TABLE IF NOT EXISTS ct.issued (v text PRIMARY KEY);
        CREATE OR REPLACE FUNCTION ct.store(v text) RETURNS TABLE(key text, value text)
          LANGUAGE sql AS $$ INSERT INTO ct.issued VALUES (v) RETURNING 'v', v $$;
        CREATE OR REPLACE FUNCTION ct.refuse(v text) RETURNS TABLE(key text, value text)
          LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'cannot use % here', v; END $$;
        """,
        database=DB,
    )
    secret = "S3cret/Pa55+word-" + str(id(driver))
    assert await call(driver, "ct.store", {"v": secret}) == {"v": secret}
    with pytest.raises(ProcedureError) as dup:
        await call(driver, "ct.store", {"v": secret})
    assert "already exists" in str(dup.value)
    with pytest.raises(ProcedureError) as raised:
        await call(driver, "ct.refuse", {"v": secret})
    assert "cannot use" in str(raised.value)
    for error in (dup.value, raised.value):
        assert secret not in str(error)
        assert secret not in error.message
        assert "***" in str(error)


async def test_a_procedure_is_parsed_once_per_connection_not_once_per_call(driver: PostgresDriver) -> None:
    """Calls go through the connection's statement cache: calling the same procedure again on a
    connection reuses its prepared statement (no new Parse round trip), so the sessions never hold more
    statements for it than there are connections, and never a new one after the first call."""
    names: set[str] = set()
    for n in range(4):
        assert await call(driver, "ct.echo", {"a": str(n)}) == {"a": str(n), "b": ""}
        pool = await driver._pool.get()
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT name, statement FROM pg_prepared_statements")
        names |= {r["name"] for r in rows if 'FROM "ct"."echo"(' in r["statement"]}
    assert 1 <= len(names) <= pool.get_size(), (names, pool.get_size())
