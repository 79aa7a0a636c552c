"""Live DBMS endpoints: one driver pool each, a token bucket and a concurrency cap, keepalive, health.

The registry is the only way the controller reaches a DBMS. It protects the DBMS (every create, rotate
and delete takes a token and a slot, alike; keepalive pings take neither, so a slow DBMS is not also
starved of health checks) and follows configuration without a restart: `apply()` adds, removes and
replaces endpoints; an endpoint whose DSN or driver changed gets a new pool while calls already running
finish on the old one, which is closed once they drain. Only limits changed: adjusted in place.

Health is a fact the registry learns from pings and calls (a connection failure marks the endpoint down,
any success marks it up); drivers re-create connections after a DBMS restart, so "up again" needs no
action here. While an endpoint is down the registry is a circuit breaker: operations fail fast with
`EndpointDown` and no DBMS call, except one probe call per cool-down (half-open), so a down DBMS is not
hammered by every retrying Database; a successful probe or keepalive ping closes the circuit.

Each ping also reads the link's real TLS state (dbaasctl.dbms.tls) into health and a metric; a link
weaker than the endpoint's `tls_minimum` makes the endpoint unusable (`TlsRefused`, no procedure call),
and a plaintext link is logged as a warning whenever it is first seen.

Errors shown in health, logs and metrics are redacted; metric labels are endpoint names,
operation names and reasons only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from prometheus_client import CollectorRegistry

from dbaasctl.dbms.drivers import Driver, ProcedureError, Reason, RoutineInfo, create_driver
from dbaasctl.dbms.drivers.base import ENDPOINT_REASONS, DbmsError
from dbaasctl.dbms.dsn import Dsn, DsnError
from dbaasctl.dbms.dsn_parse import parse_dsn
from dbaasctl.dbms.endpoint import Endpoint, EndpointHealth, EndpointMetrics, EndpointSpec
from dbaasctl.dbms.endpoint_health import HealthListener, HealthTracker
from dbaasctl.primitives.tokenbucket import Clock, Sleep
from dbaasctl.redaction import redact, register_secret

__all__ = ["EndpointHealth", "EndpointRegistry", "EndpointSpec"]

log = logging.getLogger(__name__)

DriverFactory = Callable[..., Driver]


class EndpointRegistry:
    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        driver_factory: DriverFactory = create_driver,
        registry: CollectorRegistry | None = None,
        breaker_cooldown: float = 5.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._factory = driver_factory
        self._endpoints: dict[str, Endpoint] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._metrics = EndpointMetrics(registry)
        self._tracker = HealthTracker(
            self._metrics,
            clock=clock,
            cooldown=breaker_cooldown,
            is_current=lambda ep: self._endpoints.get(ep.spec.name) is ep,
        )
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
                    self._tracker.forget(name)
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

    def _build(self, spec: EndpointSpec) -> Endpoint:
        driver: Driver | None = None
        error: str | None = None
        try:
            dsn: Dsn = parse_dsn(spec.dsn)
            if dsn.password:
                register_secret(dsn.password, slot=f"endpoint-password/{spec.name}")
            driver = self._factory(
                spec.driver,
                dsn,
                max_connections=spec.max_concurrent + 1,
                connect_timeout=spec.connect_timeout,
            )
        except (DsnError, DbmsError, ValueError) as exc:
            error = redact(str(exc))
            log.warning("endpoint misconfigured: %s", error, extra={"endpoint": spec.name})
        ep = Endpoint(spec, driver, error, clock=self._clock, sleep=self._sleep)
        if error is not None:
            self._tracker.record(ep, False, error)
        return ep

    def _retire(self, ep: Endpoint) -> None:
        if ep.keepalive is not None:
            ep.keepalive.cancel()
        task = asyncio.get_running_loop().create_task(self._drain_and_close(ep))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drain_and_close(self, ep: Endpoint) -> None:
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
                self._tracker.forget(name)
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    # ---- health -----------------------------------------------------------------------------------
    def add_listener(self, listener: HealthListener) -> None:
        """Called with (endpoint, health) whenever an endpoint goes up or down."""
        self._tracker.add_listener(listener)

    def health(self) -> dict[str, EndpointHealth]:
        return {name: ep.health for name, ep in self._endpoints.items()}

    def names(self) -> list[str]:
        return sorted(self._endpoints)

    def spec(self, endpoint: str) -> EndpointSpec | None:
        ep = self._endpoints.get(endpoint)
        return ep.spec if ep else None

    def _start_keepalive(self, ep: Endpoint) -> None:
        if ep.keepalive is not None:
            ep.keepalive.cancel()
            ep.keepalive = None
        if ep.driver is None or ep.spec.keepalive <= 0 or self._closed:
            return
        ep.keepalive = asyncio.get_running_loop().create_task(
            self._keepalive(ep), name=f"keepalive-{ep.spec.name}"
        )

    async def _keepalive(self, ep: Endpoint) -> None:
        """Ping now, then every `keepalive` seconds; never takes a token or a slot."""
        while True:
            await self.check(ep.spec.name, _endpoint=ep)
            await asyncio.sleep(ep.spec.keepalive)

    async def check(self, endpoint: str, *, _endpoint: Endpoint | None = None) -> EndpointHealth:
        """One health check now (also used by `dbaasctl check` and readiness)."""
        ep = _endpoint or self._get(endpoint)
        if ep.driver is None:
            return ep.health
        timeout = min(ep.spec.operation_timeout, ep.spec.connect_timeout + 5)
        try:
            await ep.driver.ping(timeout)
        except DbmsError as exc:
            ep.cause = exc
            self._tracker.record(ep, False, exc.message)
        else:
            self._tracker.record(ep, True, None)  # stays down when the link breaks the TLS policy
        return ep.health

    # ---- operations -------------------------------------------------------------------------------
    def _get(self, endpoint: str) -> Endpoint:
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
        try:
            probe = self._tracker.admit(ep)
        except ProcedureError as exc:
            self._metrics.operations.labels(endpoint, operation, str(exc.reason)).inc()
            raise
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
                    if exc.reason in ENDPOINT_REASONS:
                        ep.cause = exc
                        self._tracker.record(ep, False, exc.message)
                    elif (
                        exc.reason is not Reason.INVALID_CLASS and exc.reason is not Reason.OPERATION_TIMEOUT
                    ):
                        self._tracker.record(ep, True, None)  # the DBMS answered, even if with an error
                    raise
                except asyncio.CancelledError:
                    result = "Cancelled"
                    raise
                finally:
                    self._metrics.operations.labels(endpoint, operation, result).inc()
                    self._metrics.duration.labels(endpoint, operation).observe(time.monotonic() - started)
                self._tracker.record(ep, True, None)
                return out
        finally:
            if probe:
                self._tracker.probe_done(ep)
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
