"""HTTP endpoints for kubelet probes (/healthz, /readyz) and the server that carries them and /metrics.

Conventions follow controller-runtime so `kubectl get --raw`-style users see familiar output: 200 `ok`,
`?verbose` lists `[+]name ok`, a failure is 500 with `[-]name failed: reason withheld` (the probe port is
unauthenticated), `/healthz/<name>` runs one check and shows its reason, `?exclude=<name>` skips one.

- **Liveness** (`/healthz`) must stay conservative: a stalled event loop (measured by a heartbeat task,
  since a stalled loop cannot answer for itself) or a registered check such as a dead watch. It must
  never depend on the API server or a database being reachable, or an outage becomes a restart storm.
- **Readiness** (`/readyz`) is whatever registered checks say, typically "informers synced"; it is *not*
  tied to leadership, or standbys would never be Ready and a rolling update would deadlock.
- **Metrics** (`/metrics`, optionally authenticated) is added by `dbaasctl.observability.metrics_endpoint`;
  `HttpServer` serves whichever routes the application carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry

from dbaasctl.observability import metrics as m

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""A health check: None when healthy, otherwise a short reason. Synchronous and cheap (in-memory)."""


class HealthChecks:
    """A named set of checks answering one probe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        if "/" in name or not name:
            raise ValueError(f"invalid check name {name!r}")
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    def names(self) -> list[str]:
        return list(self._checks)

    def run_one(self, name: str) -> str | None:
        try:
            return self._checks[name]()
        except Exception as exc:  # a broken check is a failing check, not a crashed probe
            log.exception("health check %s raised", name)
            return f"check raised {type(exc).__name__}"

    def run(self, exclude: Iterable[str] = ()) -> list[tuple[str, str | None]]:
        skip = set(exclude)
        return [(name, self.run_one(name)) for name in self._checks if name not in skip]

    def failures(self) -> list[tuple[str, str]]:
        return [(n, r) for n, r in self.run() if r is not None]


class LoopMonitor:
    """Heartbeat task measuring event-loop lag; its check fails while the loop is (or just was) stalled."""

    def __init__(
        self, interval: float = 1.0, max_lag: float = 10.0, registry: CollectorRegistry | None = None
    ) -> None:
        self.interval = interval
        self.max_lag = max_lag
        self.last_lag = 0.0
        self._last_beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._gauge = m.gauge(
            "dbaasctl_event_loop_lag_seconds", "How late the event loop ran the last heartbeat.", (), registry
        )

    def start(self) -> None:
        if self._task is None:
            self._last_beat = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._beat(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _beat(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.last_lag = max(0.0, now - before - self.interval)
            self._last_beat = now
            self._gauge.set(self.last_lag)

    def check(self) -> str | None:
        if self._task is None or self._task.done():
            return "heartbeat task not running"
        age = time.monotonic() - self._last_beat
        if age > self.interval + self.max_lag:
            return f"event loop stalled for {age:.1f}s"
        if self.last_lag > self.max_lag:
            return f"event loop lagged {self.last_lag:.1f}s"
        return None


def _probe_handler(checks: HealthChecks) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        single = request.match_info.get("check")
        if single:
            if single not in checks.names():
                return web.Response(status=404, text=f"no such check: {single}\n")
            reason = checks.run_one(single)
            if reason is None:
                return web.Response(text="ok")
            return web.Response(status=500, text=f"internal server error: {reason}\n")
        exclude = set(request.query.getall("exclude", []))
        results = checks.run(exclude)
        failed = any(reason is not None for _, reason in results)
        verbose = "verbose" in request.query
        if not failed and not verbose:
            return web.Response(text="ok")
        lines = [
            f"[+]{name} ok" if reason is None else f"[-]{name} failed: reason withheld"
            for name, reason in results
        ]
        lines += [f"[+]{name} excluded: ok" for name in sorted(exclude) if name in checks.names()]
        lines += [
            f"warn: some health checks cannot be excluded: no matches for {name!r}"
            for name in sorted(exclude)
            if name not in checks.names()
        ]
        lines.append(f"{checks.name} check {'failed' if failed else 'passed'}")
        return web.Response(status=500 if failed else 200, text="\n".join(lines) + "\n")

    return handle


def add_probe_routes(app: web.Application, liveness: HealthChecks, readiness: HealthChecks) -> None:
    live, ready = _probe_handler(liveness), _probe_handler(readiness)
    app.router.add_get("/healthz", live)
    app.router.add_get("/healthz/{check}", live)
    app.router.add_get("/livez", live)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/readyz/{check}", ready)


class HttpServer:
    """One aiohttp site on host:port (port 0 picks a free port; see `.port` after `start()`)."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "http",
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.name = name
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self.requested_port, ssl_context=self.ssl_context, reuse_address=True
        )
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.requested_port
        scheme = "https" if self.ssl_context else "http"
        log.info("%s server listening on %s://%s:%s", self.name, scheme, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
