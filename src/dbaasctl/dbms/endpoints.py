"""Live DBMS endpoints: one driver pool each, a token bucket and a concurrency cap, keepalive, health.

The registry is the only way the controller reaches a DBMS. It protects the DBMS (every create, rotate
and delete takes a token and a slot, alike; keepalive pings take neither, so a slow DBMS is not also
starved of health checks) and follows configuration without a restart: `apply()` adds, removes and
replaces endpoints; an endpoint whose DSN or driver changed gets a new pool while calls already running
finish on the old one, which is closed once they drain. Only limits changed: adjusted in place.

Health is a fact the registry learns from pings and calls (a connection failure marks the endpoint down,
any success marks it up); drivers re-create connections after a DBMS restart, so "up again" needs no
action here. Errors shown in health, logs and metrics are redacted; metric labels are endpoint names,
operation names and reasons only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry

from dbaasctl.dbms.drivers import Driver, ProcedureError, Reason, RoutineInfo, create_driver
from dbaasctl.dbms.drivers.base import DbmsError
from dbaasctl.dbms.dsn import Dsn, DsnError, parse_dsn, redact
from dbaasctl.observability import logging as obslog
from dbaasctl.observability import metrics
from dbaasctl.primitives.clock import utc_now
from dbaasctl.primitives.tokenbucket import Clock, Sleep, TokenBucket

log = logging.getLogger(__name__)

DriverFactory = Callable[..., Driver]
HealthListener = Callable[[str, "EndpointHealth"], None]


@dataclass(frozen=True)
class EndpointSpec:
    """One configured endpoint, as OperatorConfig (+ its DSN Secret) describes it."""

    name: str
    driver: str  # the DatabaseClass driver: postgres | mysql | mariadb | sqlserver | odbc
    dsn: str = field(repr=False)
    rps: float = 0.0  # operations per second; 0 = unlimited
    burst: int = 0  # 0 = max(1, ceil(rps))
    max_concurrent: int = 10
    operation_timeout: float = 30.0
    keepalive: float = 30.0  # seconds between pings; 0 = no keepalive
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.rps < 0 or self.burst < 0:
            raise ValueError(f"endpoint {self.name}: rps and burst must not be negative")
        if self.max_concurrent < 1:
            raise ValueError(f"endpoint {self.name}: maxConcurrentOperations must be at least 1")
        if self.operation_timeout <= 0 or self.connect_timeout <= 0 or self.keepalive < 0:
            raise ValueError(f"endpoint {self.name}: timeouts must be positive")

    def _pool_key(self) -> tuple[object, ...]:
        return (self.driver, self.dsn, self.max_concurrent, self.connect_timeout)


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str
    healthy: bool | None  # None until the first ping or call
    last_check: dt.datetime | None = None
    last_error: str | None = None  # redacted
    since: dt.datetime | None = None  # when `healthy` last changed


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.up = metrics.gauge(
            "dbaasctl_endpoint_up",
            "1 when the DBMS endpoint answers, 0 when it does not.",
            ["endpoint"],
            registry,
        )
        self.operations = metrics.counter(
            "dbaasctl_dbms_operations_total",
            "DBMS operations by endpoint, operation and result (success or an error reason).",
            ["endpoint", "operation", "result"],
            registry,
        )
        self.duration = metrics.histogram(
            "dbaasctl_dbms_operation_duration_seconds",
            "Time spent in the DBMS per operation (after the rate limiter and concurrency cap).",
            ["endpoint", "operation"],
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry,
        )
        self.waiting = metrics.histogram(
            "dbaasctl_dbms_operation_wait_seconds",
            "Time an operation waited for the endpoint's rate limiter and concurrency cap.",
            ["endpoint"],
            (0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry,
        )


class _Endpoint:
    def __init__(
        self,
        spec: EndpointSpec,
        driver: Driver | None,
        config_error: str | None,
        *,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.spec = spec
        self.driver = driver
        self.config_error = config_error
        self.bucket = TokenBucket(spec.rps, spec.burst or None, clock=clock, sleep=sleep)
        self.slots = asyncio.Semaphore(spec.max_concurrent)
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.keepalive: asyncio.Task[None] | None = None
        self.health = EndpointHealth(endpoint=spec.name, healthy=None)

    def reconfigure(self, spec: EndpointSpec) -> None:
        self.bucket.configure(spec.rps, spec.burst or None)
        self.spec = spec


class EndpointRegistry:
    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        driver_factory: DriverFactory = create_driver,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._factory = driver_factory
        self._endpoints: dict[str, _Endpoint] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._listeners: list[HealthListener] = []
        self._metrics = _Metrics(registry)
        self._apply_lock = asyncio.Lock()
        self._closed = False

    # ---- configuration ----------------------------------------------------------------------------
    async def apply(self, specs: Iterable[EndpointSpec]) -> None:
        """Make the live endpoints exactly `specs` (names must be unique)."""
        wanted: dict[str, EndpointSpec] = {}
        for spec in specs:
            if spec.name in wanted:
                raise ValueError(f"endpoint names must be unique; {spec.name!r} appears twice")
            wanted[spec.name] = spec
        async with self._apply_lock:
            for name in list(self._endpoints):
                if name not in wanted:
                    self._retire(self._endpoints.pop(name))
                    self._metrics.up.remove(name)
                    log.info("endpoint removed", extra={"endpoint": name})
            for name, spec in wanted.items():
                current = self._endpoints.get(name)
                if current is not None and current.spec._pool_key() == spec._pool_key():
                    keepalive_changed = current.spec.keepalive != spec.keepalive
                    current.reconfigure(spec)
                    if keepalive_changed:
                        self._start_keepalive(current)
                    continue
                self._endpoints[name] = self._build(spec)
                if current is not None:
                    self._endpoints[name].health = replace(current.health)
                    self._retire(current)
                    log.info(
                        "endpoint replaced; running calls finish on the old pool", extra={"endpoint": name}
                    )
                else:
                    log.info("endpoint added", extra={"endpoint": name})
                self._start_keepalive(self._endpoints[name])

    def _build(self, spec: EndpointSpec) -> _Endpoint:
        driver: Driver | None = None
        error: str | None = None
        try:
            dsn: Dsn = parse_dsn(spec.dsn)
            if dsn.password:
                obslog.register_secret(dsn.password)
            driver = self._factory(
                spec.driver,
                dsn,
                max_connections=spec.max_concurrent + 1,
                connect_timeout=spec.connect_timeout,
            )
        except (DsnError, DbmsError, ValueError) as exc:
            error = redact(str(exc))
            log.warning("endpoint misconfigured: %s", error, extra={"endpoint": spec.name})
        ep = _Endpoint(spec, driver, error, clock=self._clock, sleep=self._sleep)
        if error is not None:
            self._set_health(ep, False, error)
        return ep

    def _retire(self, ep: _Endpoint) -> None:
        if ep.keepalive is not None:
            ep.keepalive.cancel()
        task = asyncio.get_running_loop().create_task(self._drain_and_close(ep))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drain_and_close(self, ep: _Endpoint) -> None:
        if ep.keepalive is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await ep.keepalive
        await ep.idle.wait()
        if ep.driver is not None:
            try:
                await ep.driver.close()
            except Exception:  # a failing close must not take the registry down
                log.warning(
                    "closing a retired endpoint pool failed", extra={"endpoint": ep.spec.name}, exc_info=True
                )

    async def close(self) -> None:
        """Stop keepalives, wait for running calls, close every pool."""
        self._closed = True
        async with self._apply_lock:
            for name in list(self._endpoints):
                self._retire(self._endpoints.pop(name))
                self._metrics.up.remove(name)
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    # ---- health -----------------------------------------------------------------------------------
    def add_listener(self, listener: HealthListener) -> None:
        """Called with (endpoint, health) whenever an endpoint goes up or down."""
        self._listeners.append(listener)

    def health(self) -> dict[str, EndpointHealth]:
        return {name: ep.health for name, ep in self._endpoints.items()}

    def names(self) -> list[str]:
        return sorted(self._endpoints)

    def spec(self, endpoint: str) -> EndpointSpec | None:
        ep = self._endpoints.get(endpoint)
        return ep.spec if ep else None

    def _set_health(self, ep: _Endpoint, healthy: bool, error: str | None) -> None:
        now = utc_now()
        previous = ep.health
        changed = previous.healthy is not healthy
        ep.health = EndpointHealth(
            endpoint=ep.spec.name,
            healthy=healthy,
            last_check=now,
            last_error=error if not healthy else previous.last_error,
            since=now if changed else previous.since,
        )
        if self._endpoints.get(ep.spec.name) is ep:
            self._metrics.up.labels(ep.spec.name).set(1 if healthy else 0)
        if changed:
            if healthy:
                log.info("endpoint up", extra={"endpoint": ep.spec.name})
            else:
                log.warning("endpoint down: %s", error, extra={"endpoint": ep.spec.name})
            for listener in list(self._listeners):
                try:
                    listener(ep.spec.name, ep.health)
                except Exception:
                    log.exception("endpoint health listener failed")

    def _start_keepalive(self, ep: _Endpoint) -> None:
        if ep.keepalive is not None:
            ep.keepalive.cancel()
            ep.keepalive = None
        if ep.driver is None or ep.spec.keepalive <= 0 or self._closed:
            return
        ep.keepalive = asyncio.get_running_loop().create_task(
            self._keepalive(ep), name=f"keepalive-{ep.spec.name}"
        )

    async def _keepalive(self, ep: _Endpoint) -> None:
        """Ping now, then every `keepalive` seconds; never takes a token or a slot."""
        while True:
            await self.check(ep.spec.name, _endpoint=ep)
            await asyncio.sleep(ep.spec.keepalive)

    async def check(self, endpoint: str, *, _endpoint: _Endpoint | None = None) -> EndpointHealth:
        """One health check now (also used by `dbaasctl check` and readiness)."""
        ep = _endpoint or self._get(endpoint)
        if ep.driver is None:
            return ep.health
        timeout = min(ep.spec.operation_timeout, ep.spec.connect_timeout + 5)
        try:
            await ep.driver.ping(timeout)
        except DbmsError as exc:
            self._set_health(ep, False, exc.message)
        else:
            self._set_health(ep, True, None)
        return ep.health

    # ---- operations -------------------------------------------------------------------------------
    def _get(self, endpoint: str) -> _Endpoint:
        ep = self._endpoints.get(endpoint)
        if ep is None:
            raise ProcedureError(Reason.UNKNOWN_ENDPOINT, f"endpoint {endpoint!r} is not configured")
        return ep

    async def run(
        self,
        endpoint: str,
        procedure: str,
        inputs: Mapping[str, str],
        *,
        expect_rows: bool,
        operation: str = "call",
    ) -> dict[str, str]:
        """One create / rotate / delete through the endpoint's limiter and cap, under its timeout."""
        ep = self._get(endpoint)
        if ep.driver is None:
            raise ProcedureError(
                Reason.CONNECTION_FAILED, f"endpoint {endpoint!r} is misconfigured: {ep.config_error}"
            )
        driver = ep.driver
        ep.inflight += 1
        ep.idle.clear()
        try:
            waited_from = self._clock()
            async with ep.slots:
                await ep.bucket.acquire()
                self._metrics.waiting.labels(endpoint).observe(max(0.0, self._clock() - waited_from))
                started = time.monotonic()
                result = "success"
                try:
                    out = await driver.call(
                        procedure, inputs, timeout=ep.spec.operation_timeout, expect_rows=expect_rows
                    )
                except DbmsError as exc:
                    result = str(exc.reason)
                    if exc.reason is Reason.CONNECTION_FAILED:
                        self._set_health(ep, False, exc.message)
                    elif (
                        exc.reason is not Reason.INVALID_CLASS and exc.reason is not Reason.OPERATION_TIMEOUT
                    ):
                        self._set_health(ep, True, None)  # the DBMS answered, even if with an error
                    raise
                except asyncio.CancelledError:
                    result = "Cancelled"
                    raise
                finally:
                    self._metrics.operations.labels(endpoint, operation, result).inc()
                    self._metrics.duration.labels(endpoint, operation).observe(time.monotonic() - started)
                self._set_health(ep, True, None)
                return out
        finally:
            ep.inflight -= 1
            if ep.inflight == 0:
                ep.idle.set()

    async def describe(self, endpoint: str, procedure: str) -> list[RoutineInfo]:
        """Catalog lookup for `dbaasctl check`; not rate limited (no procedure runs)."""
        ep = self._get(endpoint)
        if ep.driver is None:
            raise ProcedureError(
                Reason.CONNECTION_FAILED, f"endpoint {endpoint!r} is misconfigured: {ep.config_error}"
            )
        return await ep.driver.describe(procedure, timeout=ep.spec.operation_timeout)

    def stats(self, endpoint: str) -> tuple[int, int]:
        """(in-flight operations, open connections) — for tests and debugging."""
        ep = self._get(endpoint)
        return ep.inflight, (ep.driver.stats().size if ep.driver else 0)
