"""What an endpoint's health is, as the registry learns it, and the circuit breaker that health drives.

Every ping and call reports its outcome here; this is where health turns into the `up` and TLS metrics,
log lines and listener calls, and where a down endpoint or a link below the TLS policy refuses a call
before any DBMS round trip (one half-open probe per cool-down gets through). Kept apart from
`EndpointRegistry` (dbaasctl.dbms.endpoints), which owns the endpoints and runs the calls.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from dbaasctl.dbms.drivers import ProcedureError, Reason
from dbaasctl.dbms.endpoint import Endpoint, EndpointHealth, EndpointMetrics
from dbaasctl.dbms.tls import TlsState
from dbaasctl.primitives.clock import utc_now
from dbaasctl.primitives.tokenbucket import Clock

log = logging.getLogger("dbaasctl.dbms.endpoints")  # endpoint events share the registry's logger

HealthListener = Callable[[str, "EndpointHealth"], None]


class HealthTracker:
    """Health, its metrics and listeners, and the breaker, for the endpoints of one registry."""

    def __init__(
        self,
        metrics: EndpointMetrics,
        *,
        clock: Clock,
        cooldown: float,
        is_current: Callable[[Endpoint], bool],
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._cooldown = cooldown
        #: Whether an endpoint is still the live one under its name (a replaced one exports nothing).
        self._is_current = is_current
        #: (healthy, tls) as last exported per endpoint: every call reports health, few change it.
        self._exported: dict[str, tuple[bool, TlsState]] = {}
        self._listeners: list[HealthListener] = []

    def add_listener(self, listener: HealthListener) -> None:
        """Called with (endpoint, health) whenever an endpoint goes up or down."""
        self._listeners.append(listener)

    def forget(self, name: str) -> None:
        """Drop a removed endpoint's series, so a scrape does not show it forever."""
        self._exported.pop(name, None)
        self._metrics.up.remove(name)
        for state in TlsState:
            with contextlib.suppress(KeyError):
                self._metrics.tls.remove(name, str(state))

    def record(self, ep: Endpoint, healthy: bool, error: str | None) -> None:
        """A ping's or call's outcome; a link below the TLS policy keeps the endpoint down."""
        now = utc_now()
        previous = ep.health
        tls = ep.observed_tls() if ep.driver is not None else previous.tls
        if tls is TlsState.UNKNOWN:
            tls = previous.tls
        ep.health = replace(previous, tls=tls)
        if healthy and (problem := ep.tls_problem()) is not None:
            healthy, error = False, problem
        changed = previous.healthy is not healthy
        if not healthy:
            ep.retry_at = self._clock() + self._cooldown
        else:
            ep.cause = None
        ep.health = EndpointHealth(
            endpoint=ep.spec.name,
            healthy=healthy,
            last_check=now,
            last_error=error if not healthy else previous.last_error,
            since=now if changed else previous.since,
            tls=tls,
        )
        if self._is_current(ep) and self._exported.get(ep.spec.name) != (healthy, tls):
            self._exported[ep.spec.name] = (healthy, tls)
            self._metrics.up.labels(ep.spec.name).set(1 if healthy else 0)
            for state in TlsState:
                self._metrics.tls.labels(ep.spec.name, str(state)).set(1 if state is tls else 0)
        if tls is TlsState.PLAINTEXT and previous.tls is not TlsState.PLAINTEXT:
            log.warning(
                "endpoint link is not encrypted: the login and every issued credential cross it in "
                "plaintext; set TLS options in the DSN and spec.tls.minimum in the OperatorConfig",
                extra={"endpoint": ep.spec.name},
            )
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

    def admit(self, ep: Endpoint) -> bool:
        """TLS policy and circuit breaker: raise without a DBMS call, or let this call through (True
        when it goes through as the half-open probe)."""
        problem = ep.tls_problem()
        if problem is not None:
            raise ProcedureError(Reason.TLS_REFUSED, f"endpoint {ep.spec.name!r} not used: {problem}")
        if ep.health.healthy is not False:
            return False
        now = self._clock()
        if ep.probing or now < ep.retry_at:
            cause = f"{ep.cause.reason}: " if ep.cause is not None else ""
            raise ProcedureError(
                Reason.ENDPOINT_DOWN,
                f"endpoint {ep.spec.name!r} is down ({cause}{ep.health.last_error or 'unreachable'}); not "
                f"called, next attempt in {max(0.0, ep.retry_at - now):.1f}s or when a keepalive check succeeds",
                sqlstate=ep.cause.sqlstate if ep.cause is not None else None,
            )
        ep.probing = True  # half-open: this call is the probe, every other one still fails fast
        return True

    def probe_done(self, ep: Endpoint) -> None:
        """The half-open probe ended; if it did not close the circuit, wait a cool-down again."""
        ep.probing = False
        if ep.health.healthy is False:  # the probe did not close the circuit: wait again
            ep.retry_at = max(ep.retry_at, self._clock() + self._cooldown)
