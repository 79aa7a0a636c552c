"""The manager: wires informers, controllers, leader election, Events and the HTTP endpoints; owns shutdown.

Start order (controller-runtime's runnable groups): HTTP (probes, metrics) → informers → wait for every
cache to sync (bounded; a timeout is fatal) → readiness turns true → leader election (standbys stay Ready
with warm caches) → workers, Event recorders and leader-only runnables.

Stop paths:
- SIGTERM / SIGINT / `stop()`: stop taking work, let in-flight reconciles finish for up to
  `graceful_shutdown_timeout` (a second signal skips the wait), cancel the rest, flush Events briefly,
  **then** release the Lease so a standby takes over at once, stop informers and HTTP, close the client.
  `run()` returns 0.
- Lost Lease: cancel workers at once (a standby may already be starting), do not release, return 1, and
  the process must exit (the CLI does). A cache-sync timeout or a crashed runnable also returns 1.

Use:
    manager = Manager(client, ManagerSettings(lease_namespace="dbaas-system"))
    dbs = manager.add_informer(DATABASES)
    ctl = manager.add_controller("database", reconcile, workers=8)
    dbs.add_handlers(on_add=lambda o: ctl.enqueue(object_key(o)), ...)
    sys.exit(await manager.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.cache import IndexFunc, Informer
from dbaasctl.kube.controller import Controller, Reconcile
from dbaasctl.kube.events import EventRecorder
from dbaasctl.kube.leader import LeaderElector
from dbaasctl.kube.lifecycle import cancel_all, drain, until_event
from dbaasctl.kube.manager_checks import informers_synced, install_default_checks
from dbaasctl.kube.manager_settings import EVENT_FLUSH_SECONDS, ManagerSettings
from dbaasctl.kube.ratelimit import RateLimiter
from dbaasctl.kube.resources import JsonDict, ResourceRef
from dbaasctl.kube.rest import KubeClient
from dbaasctl.kube.serving import Serving
from dbaasctl.observability import metrics as m
from dbaasctl.observability.http import (
    HealthChecks,
    LoopMonitor,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
Runnable = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class _RunnableSpec:
    name: str
    fn: Runnable
    leader_only: bool


class Manager:
    def __init__(
        self,
        client: KubeApi,
        settings: ManagerSettings | None = None,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`registry` defaults to a KubeClient's own, so REST metrics and everything else are served together."""
        self.client = client
        self.settings = settings or ManagerSettings()
        if registry is None:
            registry = client.registry if isinstance(client, KubeClient) else m.default_registry()
        self.registry = registry
        self.informers: list[Informer] = []
        self.controllers: list[Controller] = []
        self.recorders: list[EventRecorder] = []
        self.liveness = HealthChecks("healthz")
        self.readiness = HealthChecks("readyz")
        self.loop_monitor = LoopMonitor(max_lag=self.settings.event_loop_max_lag, registry=self.registry)
        self.elector: LeaderElector | None = None
        if self.settings.leader_election:
            self.elector = LeaderElector(client, self.settings.lease_config(), registry=self.registry)
        self._runnables: list[_RunnableSpec] = []
        self._runnable_tasks: list[asyncio.Task[None]] = []
        self.serving = Serving(self.settings)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._leading = False
        self.probe_port: int | None = None
        self.metrics_port: int | None = None
        install_default_checks(
            self.liveness,
            self.readiness,
            loop_monitor=self.loop_monitor,
            informers=self.informers,
            elector=self.elector,
            leader_slack=self.settings.leader_healthz_slack,
        )

    # -- composition ---------------------------------------------------------------------------------

    def add_informer(
        self,
        resource: ResourceRef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        resync_period: float | None = None,
        **options: Any,
    ) -> Informer:
        """A cache started before leader election; readiness waits for it. Options go to `Informer`."""
        options.setdefault("watch_list", self.settings.watch_list)
        informer = Informer(
            self.client,
            resource,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            indexers=indexers,
            resync_period=resync_period,
            **options,
        )
        self.informers.append(informer)
        return informer

    def add_controller(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 8,
        rate_limiter: RateLimiter[str] | None = None,
        reconcile_timeout: float | None = None,
    ) -> Controller:
        """A queue and workers; `enqueue` works at once, workers run only while leading."""
        if any(c.name == name for c in self.controllers):
            raise ValueError(f"controller {name!r} already exists")
        controller = Controller(
            name,
            reconcile,
            workers=workers,
            rate_limiter=rate_limiter,
            reconcile_timeout=reconcile_timeout,
            registry=self.registry,
        )
        self.controllers.append(controller)
        return controller

    def event_recorder(
        self, reporting_controller: str, reporting_instance: str | None = None
    ) -> EventRecorder:
        """A recorder whose writes start with leadership (standbys never emit Events)."""
        recorder = EventRecorder(
            self.client,
            reporting_controller,
            reporting_instance or f"{reporting_controller.rsplit('/', 1)[-1]}-{self.settings.identity}",
            registry=self.registry,
        )
        self.recorders.append(recorder)
        return recorder

    def add_runnable(self, name: str, fn: Runnable, *, leader_only: bool = True) -> None:
        """A long-running coroutine started with the workers (or right after sync if not leader-only).

        If it returns or raises, the manager shuts down with a failure: nothing it guards runs silently
        dead.
        """
        self._runnables.append(_RunnableSpec(name, fn, leader_only))

    def add_liveness_check(self, name: str, check: Callable[[], str | None]) -> None:
        self.liveness.add(name, check)

    def add_readiness_check(self, name: str, check: Callable[[], str | None]) -> None:
        self.readiness.add(name, check)

    @property
    def is_leader(self) -> bool:
        return self._leading

    def may_act(self, duration: float = 0.0) -> bool:
        """Fencing for side effects (see `LeaderElector.may_act`); always True without leader election."""
        if self.elector is None:
            return True
        return self._leading and self.elector.may_act(duration)

    @property
    def workers_running(self) -> bool:
        return any(c.running for c in self.controllers)

    def stop(self) -> None:
        """Request a graceful stop; a second request skips the drain wait."""
        if self._stop.is_set():
            if not self._force.is_set():
                log.warning("second stop request: not waiting for in-flight reconciles")
            self._force.set()
        self._stop.set()

    # -- running -------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; returns the process exit code (0 graceful, 1 lost lease or failure)."""
        loop = asyncio.get_running_loop()
        signals: list[signal.Signals] = []
        if self.settings.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    signals.append(sig)
        try:
            return await self._run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s; shutting down", sig.name)
        self.stop()

    async def _run(self) -> int:
        code = EXIT_OK
        hold: asyncio.Task[None] | None = None
        try:
            self.loop_monitor.start()
            await self._start_http()
            for informer in self.informers:
                informer.start()
            finished, synced = await until_event(
                self._wait_synced(), self._stop, self.settings.cache_sync_timeout
            )
            if self._stop.is_set():
                return EXIT_OK
            if not finished or not synced:
                log.error(
                    "caches did not sync within %.0fs: %s",
                    self.settings.cache_sync_timeout,
                    informers_synced(self.informers),
                )
                return EXIT_FAILED
            log.info("caches synced; ready")
            self._start_runnables(leader_only=False)
            if self.elector is not None:
                acquired, _ = await until_event(self.elector.acquire(), self._stop)
                if not acquired:
                    return EXIT_OK
                hold = asyncio.get_running_loop().create_task(self.elector.hold(), name="lease-renew")
            self._leading = True
            self._start_leader_work()
            code = await self._wait_for_end(hold)
            return code
        finally:
            await self._shutdown(lost=code != EXIT_OK and hold is not None and hold.done(), hold=hold)

    async def _wait_synced(self) -> bool:
        results = await asyncio.gather(*(i.wait_for_sync() for i in self.informers))
        return all(results)

    def _start_runnables(self, *, leader_only: bool) -> None:
        loop = asyncio.get_running_loop()
        for spec in self._runnables:
            if spec.leader_only == leader_only:
                self._runnable_tasks.append(loop.create_task(spec.fn(), name=f"runnable:{spec.name}"))

    def _start_leader_work(self) -> None:
        for recorder in self.recorders:
            recorder.start()
        for controller in self.controllers:
            controller.start()
        self._start_runnables(leader_only=True)

    async def _wait_for_end(self, hold: asyncio.Task[None] | None) -> int:
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._stop.wait()), *self._runnable_tasks}
        if hold is not None:
            waiters.add(hold)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                if w not in self._runnable_tasks and w is not hold:
                    w.cancel()
        if hold is not None and hold in done:
            exc = hold.exception() if not hold.cancelled() else None
            log.error("leadership lost%s; stopping work and exiting", f" ({exc!r})" if exc else "")
            return EXIT_FAILED
        for task in self._runnable_tasks:
            if task not in done:
                continue
            exc = task.exception() if not task.cancelled() else None
            log.error("runnable %s ended%s; shutting down", task.get_name(), f": {exc!r}" if exc else "")
            return EXIT_FAILED
        return EXIT_OK

    async def _shutdown(self, *, lost: bool, hold: asyncio.Task[None] | None) -> None:
        if lost:
            # Another replica may already lead: nothing guarded may keep running, no drain, no release.
            await asyncio.gather(*(c.abort() for c in self.controllers))
            await cancel_all(self._runnable_tasks)
            self._runnable_tasks = []
        else:
            await drain(self.controllers, self.settings.graceful_shutdown_timeout, self._force, hold)
            await cancel_all(self._runnable_tasks)
            self._runnable_tasks = []
        for recorder in self.recorders:
            await recorder.stop(timeout=0.0 if lost else EVENT_FLUSH_SECONDS)
        if hold is not None and not hold.done():
            hold.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hold
        if self.elector is not None and not lost and self.elector.is_leader:
            await self.elector.release()
        self._leading = False
        for informer in self.informers:
            await informer.stop()
        await self.serving.stop()
        await self.loop_monitor.stop()
        await self.client.close()
        log.info("manager stopped")

    async def _start_http(self) -> None:
        await self.serving.start(self.liveness, self.readiness, self.registry, self._post)
        self.probe_port, self.metrics_port = self.serving.probe_port, self.serving.metrics_port

    async def _post(self, path: str, body: JsonDict) -> JsonDict:
        return await self.client.create(path, body)
