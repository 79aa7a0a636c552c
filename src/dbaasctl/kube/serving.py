"""The manager's HTTP side: probes (/healthz, /readyz) on one port, /metrics on another or the same.

Probes serve from the start (before caches sync), so the kubelet sees liveness while a large cache
lists; metrics can require a bearer token that the API server authorises (TokenReview and
SubjectAccessReview, posted through the manager's client).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from dbaasctl.kube.resources import JsonDict
from dbaasctl.observability.http import (
    HealthChecks,
    HttpServer,
    add_probe_routes,
    tls_context,
)
from dbaasctl.observability.metrics_endpoint import MetricsAuth, add_metrics_route

log = logging.getLogger(__name__)

Post = Callable[[str, JsonDict], Awaitable[JsonDict]]


class ServingSettings(Protocol):
    """The part of `ManagerSettings` this module reads."""

    @property
    def probe_host(self) -> str: ...
    @property
    def probe_port(self) -> int: ...
    @property
    def metrics_host(self) -> str: ...
    @property
    def metrics_port(self) -> int | None: ...
    @property
    def metrics_enabled(self) -> bool: ...
    @property
    def metrics_secure(self) -> bool: ...
    @property
    def metrics_cert_file(self) -> str | None: ...
    @property
    def metrics_key_file(self) -> str | None: ...


class Serving:
    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.probe_port: int | None = None
        self.metrics_port: int | None = None
        self._servers: list[HttpServer] = []

    async def start(
        self, liveness: HealthChecks, readiness: HealthChecks, registry: CollectorRegistry, post: Post
    ) -> None:
        s = self.settings
        probe_app = web.Application()
        add_probe_routes(probe_app, liveness, readiness)
        auth = MetricsAuth(post) if s.metrics_secure else None
        if s.metrics_enabled and s.metrics_port is None:
            add_metrics_route(probe_app, registry, auth)
        probes = HttpServer(probe_app, s.probe_host, s.probe_port, name="probes")
        await probes.start()
        self._servers.append(probes)
        self.probe_port = probes.port
        if s.metrics_enabled and s.metrics_port is not None:
            metrics_app = web.Application()
            add_metrics_route(metrics_app, registry, auth)
            ssl_ctx = None
            if s.metrics_cert_file and s.metrics_key_file:
                ssl_ctx = tls_context(s.metrics_cert_file, s.metrics_key_file)
            elif s.metrics_secure:
                log.warning("secure metrics without a certificate: bearer tokens travel over plain HTTP")
            server = HttpServer(
                metrics_app, s.metrics_host, s.metrics_port, ssl_context=ssl_ctx, name="metrics"
            )
            await server.start()
            self._servers.append(server)
            self.metrics_port = server.port
        elif s.metrics_enabled:
            self.metrics_port = self.probe_port

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        self._servers = []
