"""The endpoint registry against real servers: caps, tokens, keepalive, restarts, hot reload, redaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dbaasctl.dbms.drivers import Driver, ProcedureError, Reason, create_driver
from dbaasctl.dbms.endpoints import EndpointHealth, EndpointRegistry, EndpointSpec
from testbed.dbms import MariaDBServer, PostgresServer, _free_port
from testbed.fixtures_dbms import SAMPLES
from testbed.polling import wait_until

DB = "contract"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(0)
        self.now += delay


class Counting:
    """A real driver, observed: how many calls run inside it at once."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.binding = inner.binding
        self.active = 0
        self.peak = 0
        self.calls = 0
        self.closed = False

    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await self.inner.call(procedure, inputs, timeout=timeout, expect_rows=expect_rows)
        finally:
            self.active -= 1

    async def ping(self, timeout: float) -> None:
        await self.inner.ping(timeout)

    async def describe(self, procedure: str, *, timeout: float) -> Any:
        return await self.inner.describe(procedure, timeout=timeout)

    def stats(self) -> Any:
        return self.inner.stats()

    async def close(self) -> None:
        self.closed = True
        await self.inner.close()


@pytest.fixture(scope="module")
def contract_pg(postgres: PostgresServer) -> PostgresServer:
    postgres.create_database(DB)
    postgres.psql(file=SAMPLES / "test" / "postgres.sql", database=DB)
    return postgres


@pytest.fixture
def drivers() -> list[Counting]:
    return []


@pytest.fixture
async def registry(drivers: list[Counting]) -> AsyncIterator[EndpointRegistry]:
    def factory(kind: str, dsn: Any, **kw: Any) -> Driver:
        d = Counting(create_driver(kind, dsn, **kw))
        drivers.append(d)
        return d

    reg = EndpointRegistry(driver_factory=factory, registry=CollectorRegistry())
    yield reg
    await reg.close()


async def test_concurrency_cap_holds_under_a_storm(
    registry: EndpointRegistry, contract_pg: PostgresServer, drivers: list[Counting]
) -> None:
    await registry.apply(
        [EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB), max_concurrent=3, keepalive=0)]
    )
    results = await asyncio.gather(
        *(
            registry.run("pg", "ct.sleep", {"seconds": "0.2"}, expect_rows=True, operation="create")
            for _ in range(24)
        )
    )
    assert all(r == {"slept": "0.2"} for r in results)
    assert drivers[0].peak == 3
    assert registry.stats("pg")[0] == 0
    assert drivers[0].stats().size <= 4  # cap + one for keepalive


async def test_tokens_apply_to_every_operation_but_not_to_keepalive(
    contract_pg: PostgresServer,
) -> None:
    clock = FakeClock()
    reg = EndpointRegistry(clock=clock, sleep=clock.sleep, registry=CollectorRegistry())
    try:
        await reg.apply(
            [EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB), rps=1, burst=2, keepalive=0.05)]
        )
        first = reg.health()["pg"].last_check
        await wait_until(
            lambda: (h := reg.health()["pg"]).healthy is True and h.last_check != first,
            what="several keepalives",
        )
        await asyncio.sleep(0.3)  # more pings; none may spend a token
        for op in ("create", "rotate"):
            await reg.run("pg", "ct.echo", {"a": op}, expect_rows=True, operation=op)
        assert clock.now == 0.0  # the burst of 2 was intact despite the pings
        await reg.run("pg", "ct.delete_void", {"k8sname": "t"}, expect_rows=False, operation="delete")
        assert clock.now == pytest.approx(1.0)  # the third operation (a delete) waited for its token
        await reg.run("pg", "ct.echo", {"a": "x"}, expect_rows=True, operation="rotate")
        assert clock.now == pytest.approx(2.0)
    finally:
        await reg.close()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
async def test_keepalive_tracks_a_server_going_down_and_coming_back(kind: str) -> None:
    server: PostgresServer | MariaDBServer = PostgresServer() if kind == "postgres" else MariaDBServer()
    metrics = CollectorRegistry()
    reg = EndpointRegistry(registry=metrics)
    seen: list[tuple[str, bool | None]] = []
    reg.add_listener(lambda name, h: seen.append((name, h.healthy)))
    try:
        server.start()
        driver = "postgres" if kind == "postgres" else "mariadb"
        await reg.apply(
            [EndpointSpec("db1", driver, server.dsn, keepalive=0.2, connect_timeout=2, operation_timeout=5)]
        )
        await wait_until(lambda: reg.health()["db1"].healthy is True, what="up")
        assert metrics.get_sample_value("dbaasctl_endpoint_up", {"endpoint": "db1"}) == 1
        await asyncio.to_thread(server.stop)
        await wait_until(lambda: reg.health()["db1"].healthy is False, timeout=30, what="down")
        health: EndpointHealth = reg.health()["db1"]
        assert health.last_error
        assert server.admin_password not in health.last_error
        assert metrics.get_sample_value("dbaasctl_endpoint_up", {"endpoint": "db1"}) == 0
        with pytest.raises(ProcedureError) as err:
            await reg.run("db1", "nothing", {}, expect_rows=True)
        assert err.value.reason is Reason.ENDPOINT_DOWN  # the circuit is open: failed fast
        assert "is down" in err.value.message
        assert server.admin_password not in err.value.message
        await asyncio.to_thread(server.start)
        await wait_until(lambda: reg.health()["db1"].healthy is True, timeout=30, what="up again")
        assert seen == [("db1", True), ("db1", False), ("db1", True)]
        # and operations work again on re-created connections
        probe = "ct.echo" if kind == "postgres" else "mysql.nothing"
        if kind == "postgres":
            await asyncio.to_thread(
                server.psql,
                "CREATE SCHEMA ct; CREATE FUNCTION ct.echo(a text) RETURNS TABLE(key text, value text) LANGUAGE sql AS $$ SELECT 'a', a $$",
            )
            assert await reg.run("db1", probe, {"a": "back"}, expect_rows=True) == {"a": "back"}
        else:
            with pytest.raises(ProcedureError) as err2:
                await reg.run("db1", probe, {}, expect_rows=True)
            assert err2.value.reason is Reason.PROCEDURE_NOT_FOUND  # the server answered
    finally:
        await reg.close()
        server.close()


async def test_hot_replace_lets_running_calls_finish_on_the_old_pool(
    registry: EndpointRegistry, contract_pg: PostgresServer, drivers: list[Counting]
) -> None:
    spec = EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB), keepalive=0)
    await registry.apply([spec])
    running = asyncio.create_task(registry.run("pg", "ct.sleep", {"seconds": "1"}, expect_rows=True))
    await wait_until(lambda: drivers[0].active == 1, what="call running")
    # The DSN Secret changed (here: application options), so a new pool is built.
    await registry.apply(
        [EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB) + "?application_name=v2", keepalive=0)]
    )
    assert len(drivers) == 2
    assert await registry.run("pg", "ct.echo", {"a": "new"}, expect_rows=True) == {"a": "new", "b": ""}
    assert drivers[1].peak == 1
    assert not drivers[0].closed  # still draining
    assert await running == {"slept": "1"}
    await wait_until(lambda: drivers[0].closed, what="old pool closed after draining")
    # limits only: same pool, adjusted in place
    await registry.apply(
        [EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB) + "?application_name=v2", rps=5, keepalive=0)]
    )
    assert len(drivers) == 2
    await registry.apply([])
    with pytest.raises(ProcedureError) as err:
        await registry.run("pg", "ct.echo", {"a": "x"}, expect_rows=True)
    assert err.value.reason is Reason.UNKNOWN_ENDPOINT
    await wait_until(lambda: drivers[1].closed, what="removed endpoint closed")


async def test_metrics_count_operations_by_result(contract_pg: PostgresServer) -> None:
    metrics = CollectorRegistry()
    reg = EndpointRegistry(registry=metrics)
    try:
        await reg.apply([EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB), keepalive=0)])
        await reg.run("pg", "ct.echo", {"a": "1"}, expect_rows=True, operation="create")
        with pytest.raises(ProcedureError):
            await reg.run("pg", "ct.dup_keys", {}, expect_rows=True, operation="rotate")
        ok = metrics.get_sample_value(
            "dbaasctl_dbms_operations_total", {"endpoint": "pg", "operation": "create", "result": "success"}
        )
        bad = metrics.get_sample_value(
            "dbaasctl_dbms_operations_total",
            {"endpoint": "pg", "operation": "rotate", "result": "DuplicateKey"},
        )
        assert (ok, bad) == (1.0, 1.0)
        count = metrics.get_sample_value(
            "dbaasctl_dbms_operation_duration_seconds_count", {"endpoint": "pg", "operation": "create"}
        )
        assert count == 1.0
    finally:
        await reg.close()


async def test_no_password_in_errors_logs_health_or_metrics(
    contract_pg: PostgresServer, mariadb: MariaDBServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Scan every text these modules produce while things go wrong, for the admin passwords."""
    mariadb.create_database(DB)
    mariadb.sql(file=SAMPLES / "test" / "mariadb.sql", database=DB)
    wrong = "Wr0ng-Pa55word-xyz"
    secrets = [contract_pg.admin_password, mariadb.admin_password, wrong]
    caplog.set_level(logging.DEBUG)
    metrics = CollectorRegistry()
    reg = EndpointRegistry(registry=metrics)
    texts: list[str] = []
    try:
        await reg.apply(
            [
                EndpointSpec("pg", "postgres", contract_pg.dsn_for(DB), keepalive=0.1),
                EndpointSpec("maria", "mariadb", mariadb.dsn_for(DB), keepalive=0.1),
                EndpointSpec("badpw", "postgres", contract_pg.dsn_for(DB, password=wrong), keepalive=0.1),
                EndpointSpec(
                    "gone",
                    "mysql",
                    f"mysql://admin:{wrong}@127.0.0.1:{_free_port()}/x",
                    keepalive=0.1,
                    connect_timeout=1,
                ),
                EndpointSpec(
                    "garbled", "postgres", f"postgres://admin:{wrong}@host:port:x/db", keepalive=0.1
                ),
                EndpointSpec("mismatch", "mysql", contract_pg.dsn_for(DB), keepalive=0.1),
            ]
        )
        attempts = [
            ("pg", "ct.raise_error", {"msg": contract_pg.admin_password}),  # the procedure echoes the secret
            ("maria", "raise_error", {"0": mariadb.admin_password}),
            ("pg", "ct.no_such", {}),
            ("badpw", "ct.echo", {"a": "1"}),
            ("gone", "x", {}),
            ("garbled", "x", {}),
            ("mismatch", "x", {}),
        ]
        for endpoint, proc, inputs in attempts:
            with pytest.raises(ProcedureError) as err:
                await reg.run(endpoint, proc, inputs, expect_rows=True)
            texts += [str(err.value), repr(err.value), err.value.message]
        await wait_until(
            lambda: all(reg.health()[n].healthy is False for n in ("badpw", "gone", "garbled", "mismatch")),
            what="bad endpoints down",
        )
        for h in reg.health().values():
            texts.append(repr(h))
        texts.append(repr(reg.spec("badpw")))
    finally:
        await reg.close()
    from prometheus_client import generate_latest

    texts.append(generate_latest(metrics).decode())
    texts += [r.getMessage() for r in caplog.records]
    texts += [caplog.text]
    assert any("***" in t for t in texts)  # redaction did happen (the procedures echoed secrets)
    for secret in secrets:
        leaks = [t[:200] for t in texts if secret in t]
        assert not leaks, f"secret leaked in: {leaks}"


async def test_circuit_breaker_fails_fast_while_down_and_probes_half_open(
    fresh_postgres: PostgresServer, drivers: list[Counting]
) -> None:
    """Down per the keepalive: no DBMS call, except one probe per cool-down; a good probe closes it."""
    clock = FakeClock()

    def factory(kind: str, dsn: Any, **kw: Any) -> Driver:
        d = Counting(create_driver(kind, dsn, **kw))
        drivers.append(d)
        return d

    reg = EndpointRegistry(
        driver_factory=factory,
        registry=CollectorRegistry(),
        clock=clock,
        sleep=clock.sleep,
        breaker_cooldown=5,
    )
    fresh_postgres.psql(
        "CREATE SCHEMA ct; CREATE FUNCTION ct.echo(a text) RETURNS TABLE(key text, value text) "
        "LANGUAGE sql AS $$ SELECT 'a', a $$"
    )
    try:
        await reg.apply([EndpointSpec("pg", "postgres", fresh_postgres.dsn, keepalive=0, connect_timeout=2)])
        (driver,) = drivers
        assert await reg.run("pg", "ct.echo", {"a": "1"}, expect_rows=True) == {"a": "1"}
        await asyncio.to_thread(fresh_postgres.stop)
        assert (await reg.check("pg")).healthy is False  # what the keepalive does
        calls = driver.calls
        for _ in range(5):
            with pytest.raises(ProcedureError) as err:
                await reg.run("pg", "ct.echo", {"a": "1"}, expect_rows=True)
            assert err.value.reason is Reason.ENDPOINT_DOWN
            assert err.value.transient
        assert driver.calls == calls  # not one call reached the driver
        clock.now += 5  # half-open: one probe goes through, and fails against the stopped server
        with pytest.raises(ProcedureError) as err:
            await reg.run("pg", "ct.echo", {"a": "1"}, expect_rows=True)
        assert err.value.reason is Reason.CONNECTION_FAILED
        assert driver.calls == calls + 1
        with pytest.raises(ProcedureError) as err:
            await reg.run("pg", "ct.echo", {"a": "1"}, expect_rows=True)
        assert err.value.reason is Reason.ENDPOINT_DOWN  # open again for another cool-down
        await asyncio.to_thread(fresh_postgres.start)
        clock.now += 5
        assert await reg.run("pg", "ct.echo", {"a": "2"}, expect_rows=True) == {"a": "2"}  # the probe
        assert reg.health()["pg"].healthy is True
        assert await reg.run("pg", "ct.echo", {"a": "3"}, expect_rows=True) == {"a": "3"}  # closed
    finally:
        await reg.close()
