"""The stored-procedure contract on a real MariaDB through aiomysql (deploy/samples/test/mariadb.sql)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dbms_cases import INJECTION_CORPUS, in_use

from dbaasctl.dbms.drivers import ContractError, ProcedureError, Reason
from dbaasctl.dbms.drivers.mysql import MySQLDriver
from dbaasctl.dbms.dsn_parse import parse_dsn
from testbed.dbms import MariaDBServer
from testbed.fixtures_dbms import SAMPLES
from testbed.polling import wait_until

DB = "contract"


@pytest.fixture(scope="module")
def contract_db(mariadb: MariaDBServer) -> MariaDBServer:
    mariadb.create_database(DB)
    mariadb.sql(file=SAMPLES / "test" / "mariadb.sql", database=DB)
    return mariadb


@pytest.fixture
async def driver(contract_db: MariaDBServer) -> AsyncIterator[MySQLDriver]:
    d = MySQLDriver(parse_dsn(contract_db.dsn_for(DB)), max_connections=4)
    yield d
    assert in_use(d) == 0, "a connection was not returned to the pool"
    await d.close()


async def call(
    d: MySQLDriver, proc: str, *values: str, timeout: float = 10, rows: bool = True
) -> dict[str, str]:
    return await d.call(proc, {str(i): v for i, v in enumerate(values)}, timeout=timeout, expect_rows=rows)


async def test_positional_echo(driver: MySQLDriver) -> None:
    assert await call(driver, "echo", "x", "y") == {"a": "x", "b": "y"}
    assert await call(driver, "contract.echo", "q", "") == {"a": "q", "b": ""}


async def test_null_extra_columns_and_numbers(driver: MySQLDriver) -> None:
    assert await call(driver, "with_null") == {"username": "u", "password": ""}
    assert await call(driver, "extra_columns") == {"username": "u", "port": "3306"}
    assert await call(driver, "non_text") == {"port": "3306"}


async def test_key_value_set_wins_over_other_sets(driver: MySQLDriver) -> None:
    assert await call(driver, "two_sets") == {"username": "u"}


@pytest.mark.parametrize(
    ("procedure", "values", "reason", "fragment"),
    [
        ("dup_keys", (), Reason.DUPLICATE_KEY, "'password' more than once"),
        ("wrong_shape", (), Reason.BAD_RESULT_SHAPE, "(name, val)"),
        ("two_kv_sets", (), Reason.BAD_RESULT_SHAPE, "exactly one"),
        ("no_such_procedure", (), Reason.PROCEDURE_NOT_FOUND, "does not exist"),
        ("echo", ("only one",), Reason.WRONG_PARAMETERS, "Incorrect number of arguments"),
        ("raise_error", ("quota",), Reason.PROCEDURE_FAILED, "procedure refused: ***"),
        ("error_after_rows", (), Reason.PROCEDURE_FAILED, "failed after the first result set"),
    ],
)
async def test_documented_errors(
    driver: MySQLDriver, procedure: str, values: tuple[str, ...], reason: Reason, fragment: str
) -> None:
    with pytest.raises(ProcedureError) as err:
        await call(driver, procedure, *values)
    assert err.value.reason is reason, str(err.value)
    assert fragment in str(err.value)
    assert await call(driver, "echo", "still", "usable") == {"a": "still", "b": "usable"}


@pytest.mark.parametrize(
    "inputs",
    [{"0": "a", "2": "b"}, {"1": "a"}, {"a": "x"}, {"0": "a", "00": "b"}, {"0": "a", "-1": "b"}, {" 0": "a"}],
)
async def test_positional_keys_must_be_gapless(driver: MySQLDriver, inputs: dict[str, str]) -> None:
    with pytest.raises(ContractError) as err:
        await driver.call("echo", inputs, timeout=5, expect_rows=True)
    assert "without gaps" in str(err.value)
    assert driver.stats().size == 0


@pytest.mark.parametrize("name", ["x; DROP TABLE t", "a.b.c", "`echo`", "echo()", ""])
async def test_bad_procedure_name_is_a_class_error(driver: MySQLDriver, name: str) -> None:
    with pytest.raises(ContractError):
        await call(driver, name)


async def test_delete_ignores_rows(driver: MySQLDriver, contract_db: MariaDBServer) -> None:
    assert await call(driver, "delete_it", "gone", rows=False) == {}
    assert await call(driver, "two_sets", rows=False) == {}
    assert contract_db.sql("SELECT name FROM deleted WHERE name = 'gone'", database=DB).strip() == "gone"


async def test_error_after_rows_surfaces_on_delete_too(driver: MySQLDriver) -> None:
    with pytest.raises(ProcedureError, match="failed after the first result set"):
        await call(driver, "error_after_rows", rows=False)


async def test_hung_procedure_times_out_and_is_killed(
    driver: MySQLDriver, contract_db: MariaDBServer
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    probe = asyncio.create_task(wait_until(lambda: _sleeping(contract_db) == 1, timeout=20, what="running"))
    with pytest.raises(ProcedureError) as err:
        await call(driver, "sleep_for", "120", timeout=3.0)
    await probe
    assert err.value.reason is Reason.OPERATION_TIMEOUT
    assert loop.time() - started < 30
    await wait_until(lambda: _sleeping(contract_db) == 0, timeout=20, what="server thread killed")
    assert await call(driver, "echo", "after", "") == {"a": "after", "b": ""}


async def test_cancelled_call_kills_server_statement(driver: MySQLDriver, contract_db: MariaDBServer) -> None:
    task = asyncio.create_task(call(driver, "sleep_for", "120", timeout=60))
    await wait_until(lambda: _sleeping(contract_db) == 1, timeout=20, what="statement running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: _sleeping(contract_db) == 0, timeout=20, what="server thread killed")


def _sleeping(server: MariaDBServer) -> int:
    out = server.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        "WHERE ID <> CONNECTION_ID() AND STATE = 'User sleep'",
        database=DB,
    )
    return int(out.strip())


async def test_hundred_thousand_rows(driver: MySQLDriver) -> None:
    out = await call(driver, "many", "100000", timeout=120)
    assert len(out) == 100000
    assert out["k100000"] == "v" * 20 + "100000"


@pytest.mark.parametrize("value", [*INJECTION_CORPUS, "nul\x00byte"], ids=range(len(INJECTION_CORPUS) + 1))
async def test_injection_corpus_round_trips(driver: MySQLDriver, value: str) -> None:
    out = await call(driver, "echo", value, value[::-1])
    assert out["a"].encode("utf-8") == value.encode("utf-8")
    assert out["b"] == value[::-1]


async def test_injection_with_no_backslash_escapes(driver: MySQLDriver, contract_db: MariaDBServer) -> None:
    """The driver must follow the server's SQL mode, not assume backslash escapes."""
    contract_db.sql("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')")
    try:
        fresh = MySQLDriver(parse_dsn(contract_db.dsn_for(DB)), max_connections=1)
        try:
            for value in ("back\\slash", "\\'", "it's", "trailing\\", "\\' OR 1=1 -- "):
                assert await call(fresh, "echo", value, "") == {"a": value, "b": ""}
        finally:
            await fresh.close()
    finally:
        contract_db.sql("SET GLOBAL sql_mode = REPLACE(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES', '')")


async def test_describe_counts_parameters(driver: MySQLDriver) -> None:
    (echo,) = await driver.describe("echo", timeout=10)
    assert [p.name for p in echo.inputs] == ["a", "b"]
    assert echo.kind == "procedure"
    assert await driver.describe("contract.with_null", timeout=10) != []
    assert await driver.describe("nothing_here", timeout=10) == []


async def test_kill_after_a_server_restart_spares_the_thread_that_reused_the_id(
    fresh_mariadb: MariaDBServer,
) -> None:
    """Thread ids restart after a server restart: the cancel path must not KILL whoever has ours now."""
    import pymysql

    def connect() -> pymysql.connections.Connection:
        return pymysql.connect(
            host=fresh_mariadb.host,
            port=fresh_mariadb.port,
            user=fresh_mariadb.admin_user,
            password=fresh_mariadb.admin_password,
            connect_timeout=5,
        )

    # Move the id counter well past the ids a restarting server hands out to its own threads and to the
    # test bed's readiness probes, so the id is handed out again after the restart.
    for _ in range(300):
        connect().close()
    d = MySQLDriver(parse_dsn(fresh_mariadb.dsn), max_connections=2, connect_timeout=5)
    others: list[pymysql.connections.Connection] = []
    try:
        pool = await d._pool.get()
        conn = await pool.acquire()
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")  # the statement a timeout would interrupt
        old_id = conn.thread_id()
        await asyncio.to_thread(fresh_mariadb.restart)
        reused = None
        for _ in range(old_id + 50):
            other = await asyncio.to_thread(connect)
            if other.thread_id() == old_id:
                reused = other
                others.append(other)
                break
            other.close()
        assert reused is not None, f"thread id {old_id} was not handed out again after the restart"
        d._discard(conn)  # the timeout / cancellation path: close, then KILL the server thread
        pool.release(conn)
        await asyncio.gather(*d._background)
        with reused.cursor() as cur:  # still alive: the KILL was not sent to a stranger
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        for other in others:
            other.close()
        await d.close()


async def test_the_calls_own_values_are_masked_in_signal_texts(
    driver: MySQLDriver, contract_db: MariaDBServer
) -> None:
    """A SIGNAL message built from an argument must not carry the bound value out of the driver."""
    contract_db.sql(
        """
        DROP PROCEDURE IF EXISTS refuse_pw;
        DELIMITER //
        CREATE PROCEDURE refuse_pw(IN pw VARCHAR(200))
        BEGIN
          DECLARE msg VARCHAR(255) DEFAULT CONCAT('weak choice ', pw, ' refused');
          SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg;
        END //
        DELIMITER ;
        """,
        database=DB,
    )
    secret = "S3cret/Pa55+word-" + str(id(driver))
    with pytest.raises(ProcedureError) as raised:
        await call(driver, "refuse_pw", secret)
    assert "weak choice" in str(raised.value)
    assert secret not in str(raised.value)
    assert "***" in str(raised.value)
