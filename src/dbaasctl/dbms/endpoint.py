"""One DBMS endpoint as the registry holds it: its configuration, its health, its limits and metrics.

`EndpointRegistry` (dbaasctl.dbms.endpoints) owns these; nothing else creates them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from dbaasctl.dbms.drivers import Driver
from dbaasctl.dbms.drivers.base import DbmsError
from dbaasctl.dbms.tls import TlsState, satisfies
from dbaasctl.observability import metrics
from dbaasctl.primitives.tokenbucket import Clock, Sleep, TokenBucket


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
    tls_minimum: TlsState = TlsState.PLAINTEXT  # weakest link the endpoint may use

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
    tls: TlsState = TlsState.UNKNOWN  # of the link the last ping or call used


class EndpointMetrics:
    """The per-endpoint series, registered once per registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.up = metrics.gauge(
            "dbaasctl_endpoint_up",
            "1 when the DBMS endpoint answers, 0 when it does not.",
            ["endpoint"],
            registry,
        )
        self.tls = metrics.gauge(
            "dbaasctl_endpoint_tls",
            "1 for the TLS state of the endpoint's link (verified, encrypted, plaintext or unknown).",
            ["endpoint", "state"],
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


class Endpoint:
    """One live endpoint: its driver pool, rate limiter, concurrency cap, health and circuit state."""

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
        self.retry_at = 0.0  # registry clock: when an open circuit lets the next probe call through
        self.probing = False
        self.cause: DbmsError | None = None  # why it went down, named again while the circuit is open
        self.apply_tls_policy()

    def reconfigure(self, spec: EndpointSpec) -> None:
        self.bucket.configure(spec.rps, spec.burst or None)
        self.spec = spec
        self.apply_tls_policy()

    def apply_tls_policy(self) -> None:
        """Drivers that can see their link also refuse, per connection, below the minimum."""
        if self.driver is not None and hasattr(self.driver, "tls_minimum"):
            self.driver.tls_minimum = self.spec.tls_minimum

    def observed_tls(self) -> TlsState:
        tls_state = getattr(self.driver, "tls_state", None)
        return TlsState(tls_state()) if callable(tls_state) else TlsState.UNKNOWN

    def tls_problem(self) -> str | None:
        """Why the link breaks the policy, when it is known to; None when allowed or not yet seen."""
        state, minimum = self.health.tls, self.spec.tls_minimum
        if satisfies(state, minimum):
            return None
        if state is TlsState.UNKNOWN and hasattr(self.driver, "tls_state"):
            return None  # not seen yet: the driver checks the connection before the first call
        return f"the link is {state}, the endpoint's TLS policy requires {minimum}"
