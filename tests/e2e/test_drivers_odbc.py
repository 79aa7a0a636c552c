"""The contract through unixODBC with Debian's psqlODBC and MariaDB Connector/ODBC drivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from dbms_cases import INJECTION_CORPUS, in_use

from dbaasctl.dbms.drivers import ContractError, ProcedureError, Reason, create_driver
from dbaasctl.dbms.drivers.odbc import OdbcDriver
from dbaasctl.dbms.dsn_parse import parse_dsn
from testbed.dbms import MariaDBServer, OdbcDrivers, PostgresServer
from testbed.fixtures_dbms import SAMPLES
from testbed.polling import wait_until

DB = "contract"


@dataclass
class Target:
    """One DBMS behind ODBC: the procedure names differ (PostgreSQL's live in schema ct)."""

    name: str
    connection_string: str
    prefix: str
    sleep: str
    sleeping: object  # () -> int


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def target(
    request: pytest.FixtureRequest,
    postgres: PostgresServer,
    mariadb: MariaDBServer,
    odbc_drivers: OdbcDrivers,
) -> Target:
    if request.param == "postgres":
        postgres.create_database(DB)
        postgres.psql(file=SAMPLES / "test" / "postgres.sql", database=DB)

        def pg_sleeping() -> int:
            return int(
                postgres.psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%ct%sleep%' "
                    "AND pid <> pg_backend_pid()",
                    database=DB,
                ).strip()
            )

        return Target(
            "postgres",
            postgres.odbc_connection_string(DB, odbc_drivers.postgres),
            "ct.",
            "ct.sleep",
            pg_sleeping,
        )
    mariadb.create_database(DB)
    mariadb.sql(file=SAMPLES / "test" / "mariadb.sql", database=DB)

    def maria_sleeping() -> int:
        return int(
            mariadb.sql(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                "AND STATE = 'User sleep'"
            ).strip()
        )

    return Target(
        "mariadb", mariadb.odbc_connection_string(DB, odbc_drivers.mariadb), "", "sleep_for", maria_sleeping
    )


@pytest.fixture
async def driver(target: Target) -> AsyncIterator[OdbcDriver]:
    d = create_driver("odbc", parse_dsn("odbc:" + target.connection_string), max_connections=4)
    assert isinstance(d, OdbcDriver)
    yield d
    assert in_use(d) == 0, "a connection was not returned to the pool"
    await d.close()


async def call(
    d: OdbcDriver, proc: str, *values: str, timeout: float = 10, rows: bool = True
) -> dict[str, str]:
    return await d.call(proc, {str(i): v for i, v in enumerate(values)}, timeout=timeout, expect_rows=rows)


async def test_echo_null_extra_columns(driver: OdbcDriver, target: Target) -> None:
    p = target.prefix
    assert await call(driver, p + "echo", "x", "y") == {"a": "x", "b": "y"}
    assert await call(driver, p + "with_null") == {"username": "u", "password": ""}
    out = await call(driver, p + "extra_columns")
    assert out["username"] == "u"
    assert out["port"] in ("5432", "3306")


@pytest.mark.parametrize(
    ("procedure", "values", "reason", "fragment"),
    [
        ("dup_keys", (), Reason.DUPLICATE_KEY, "'password' more than once"),
        ("wrong_shape", (), Reason.BAD_RESULT_SHAPE, "key and value"),
        ("no_such_procedure", (), Reason.PROCEDURE_NOT_FOUND, "does not exist"),
        ("raise_error", ("quota",), Reason.PROCEDURE_FAILED, "procedure refused: ***"),
        ("error_after_rows", (), Reason.PROCEDURE_FAILED, "failed after the first"),
    ],
)
async def test_documented_errors(
    driver: OdbcDriver, target: Target, procedure: str, values: tuple[str, ...], reason: Reason, fragment: str
) -> None:
    with pytest.raises(ProcedureError) as err:
        await call(driver, target.prefix + procedure, *values)
    assert err.value.reason is reason, str(err.value)
    assert fragment in str(err.value)
    assert await call(driver, target.prefix + "echo", "still", "ok") == {"a": "still", "b": "ok"}


async def test_wrong_parameter_count_is_an_error(driver: OdbcDriver, target: Target) -> None:
    with pytest.raises(ProcedureError) as err:
        await call(driver, target.prefix + "raise_error", "a", "b", "c")
    assert err.value.reason in (Reason.WRONG_PARAMETERS, Reason.PROCEDURE_NOT_FOUND)


async def test_positional_keys_and_names_validated(driver: OdbcDriver, target: Target) -> None:
    with pytest.raises(ContractError):
        await driver.call(target.prefix + "echo", {"0": "a", "2": "b"}, timeout=5, expect_rows=True)
    with pytest.raises(ContractError):
        await driver.call("echo; DROP TABLE x", {}, timeout=5, expect_rows=True)


async def test_hung_procedure_times_out_and_is_cancelled(driver: OdbcDriver, target: Target) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProcedureError) as err:
        await call(driver, target.sleep, "120", timeout=2.0)
    assert err.value.reason is Reason.OPERATION_TIMEOUT
    assert loop.time() - started < 30
    await wait_until(lambda: target.sleeping() == 0, timeout=20, what="server-side statement cancelled")  # type: ignore[operator]
    assert await call(driver, target.prefix + "echo", "after", "") == {"a": "after", "b": ""}


async def test_hundred_thousand_rows(driver: OdbcDriver, target: Target) -> None:
    out = await call(driver, target.prefix + "many", "100000", timeout=120)
    assert len(out) == 100000


@pytest.mark.parametrize("value", INJECTION_CORPUS, ids=range(len(INJECTION_CORPUS)))
async def test_injection_corpus_round_trips(driver: OdbcDriver, target: Target, value: str) -> None:
    out = await call(driver, target.prefix + "echo", value, value[::-1])
    assert out["a"].encode("utf-8") == value.encode("utf-8")
    assert out["b"] == value[::-1]


async def test_connection_failure_is_redacted(target: Target) -> None:
    bad = target.connection_string.replace("PWD={", "PWD={wrong-Secret-9")
    d = create_driver("odbc", parse_dsn("odbc:" + bad), max_connections=1, connect_timeout=3)
    try:
        with pytest.raises(ProcedureError) as err:
            await d.ping(10)
        # psqlODBC reports a refused login as 08001, MariaDB Connector/ODBC as 28000 (access denied)
        expected = Reason.AUTHENTICATION_FAILED if target.name == "mariadb" else Reason.CONNECTION_FAILED
        assert err.value.reason is expected, str(err.value)
        assert "wrong-Secret-9" not in str(err.value)
    finally:
        await d.close()


_TRACED_CALL = """
import asyncio, sys
from dbaasctl.dbms.drivers import create_driver
from dbaasctl.dbms.dsn_parse import parse_dsn

async def main() -> None:
    d = create_driver("odbc", parse_dsn("odbc:" + sys.argv[1]), max_connections=1)
    try:
        await d.call("echo", {"0": "x", "1": "y"}, timeout=30, expect_rows=True)
    finally:
        await d.close()

asyncio.run(main())
"""


def test_first_statement_on_a_new_connection_carries_the_query_timeout(
    mariadb: MariaDBServer, odbc_drivers: OdbcDrivers
) -> None:
    """pyodbc hands the connection's timeout to cursors made after it is set; the driver manager's trace
    shows every SQL_ATTR_QUERY_TIMEOUT a statement got. Runs in its own process: unixODBC reads the
    trace setting once, when the first ODBC environment is made."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    mariadb.create_database(DB)
    mariadb.sql(file=SAMPLES / "test" / "mariadb.sql", database=DB)
    sysini = Path(tempfile.mkdtemp(prefix="odbc-"))  # unixODBC ignores a long TraceFile path
    trace = sysini / "trace.log"
    ini = (odbc_drivers.sysini / "odbcinst.ini").read_text(encoding="utf-8")
    (sysini / "odbcinst.ini").write_text(f"[ODBC]\nTrace=Yes\nTraceFile={trace}\n\n{ini}", encoding="utf-8")
    (sysini / "odbc.ini").write_text("", encoding="utf-8")
    env = {**os.environ, "ODBCSYSINI": str(sysini), "ODBCINI": str(sysini / "odbc.ini")}
    try:
        subprocess.run(
            [sys.executable, "-c", _TRACED_CALL, mariadb.odbc_connection_string(DB, odbc_drivers.mariadb)],
            env=env,
            check=True,
            timeout=120,
        )
        text = trace.read_text(encoding="utf-8", errors="replace")
    finally:
        shutil.rmtree(sysini, ignore_errors=True)
    assert "[SQLExecute.c]" in text or "[SQLExecDirect" in text, "the trace shows no statement"
    # the call's 30 s plus the 2 s margin, on the statement of the connection's very first call
    assert re.search(r"Attribute = SQL_ATTR_QUERY_TIMEOUT\s+Value = 0x20\b", text), (
        "the first statement ran without a query timeout"
    )
