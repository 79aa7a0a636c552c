"""Kubernetes Event recorder: events.k8s.io/v1 first, core/v1 as fallback; aggregated, filtered, never blocking.

- `record()` is a plain method that only appends to a bounded queue: a reconcile never waits for, and
  never fails because of, an Event. A background task writes them; when the queue is full the event is
  dropped and counted.
- Repeats become a series (`kube.eventseries`): one Event object whose `series.count` /
  `lastObservedTime` are patched (core/v1: `count` / `lastTimestamp`); a per-object spam filter drops
  floods; notes are redacted and cut to the API's limit.
- The raw dict carries a MicroTime with 6 fractional digits, which the API requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.eventseries import (
    FIELD_LIMIT,
    Aggregator,
    EventType,
    ObjectRef,
    Pending,
    Series,
    clean_note,
)
from dbaasctl.kube.resources import CORE_EVENTS, EVENTS, JsonDict
from dbaasctl.observability import metrics as m
from dbaasctl.primitives.clock import loop_time, micro_time, rfc3339

log = logging.getLogger(__name__)


def _namespace_gone(exc: ApiError) -> bool:
    """403 "namespace is being terminated" / 404 namespace not found: not an RBAC problem, so neither a
    reason to fall back to core/v1 Events nor a warning."""
    message = exc.message or ""
    return (exc.is_forbidden and "being terminated" in message) or (
        exc.is_not_found and 'namespaces "' in message
    )


def _event_name(ref_name: str) -> str:
    name = f"{ref_name}.{time.time_ns():x}"
    return name if len(name) <= 253 and ref_name else uuid.uuid4().hex


class EventRecorder:
    """Create inside the running loop; `start()` before use, `await stop()` at shutdown."""

    def __init__(
        self,
        client: KubeApi,
        reporting_controller: str,
        reporting_instance: str | None = None,
        *,
        queue_size: int = 1000,
        series_window: float = 360.0,
        spam_burst: int = 25,
        spam_refill_seconds: float = 300.0,
        cache_size: int = 4096,
        write_timeout: float = 10.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self.client = client
        self.reporting_controller = reporting_controller[:FIELD_LIMIT]
        instance = reporting_instance or f"{reporting_controller.rsplit('/', 1)[-1]}-{socket.gethostname()}"
        self.reporting_instance = instance[:FIELD_LIMIT]
        self.write_timeout = write_timeout
        self._aggregator = Aggregator(
            series_window=series_window,
            spam_burst=spam_burst,
            spam_refill_seconds=spam_refill_seconds,
            cache_size=cache_size,
            clock=clock,
        )
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=queue_size)
        self._api: Literal["events", "core"] = "events"
        self._task: asyncio.Task[None] | None = None
        counter = m.counter(
            "dbaasctl_events_total",
            "Kubernetes Events handled by the recorder, by outcome (created, aggregated, filtered, dropped, "
            "failed).",
            ("result",),
            registry,
        )
        self._results = {
            r: counter.labels(result=r) for r in ("created", "aggregated", "filtered", "dropped", "failed")
        }

    # -- caller side ---------------------------------------------------------------------------------

    def record(
        self,
        regarding: Mapping[str, Any] | ObjectRef,
        type: EventType,
        reason: str,
        note: str,
        action: str | None = None,
        related: Mapping[str, Any] | ObjectRef | None = None,
    ) -> None:
        """Queue an Event; never blocks, never raises."""
        try:
            ref = regarding if isinstance(regarding, ObjectRef) else ObjectRef.from_object(regarding)
            rel = (
                related
                if related is None or isinstance(related, ObjectRef)
                else ObjectRef.from_object(related)
            )
            item = Pending(
                ref=ref,
                type=type,
                reason=(reason or "Unknown")[:FIELD_LIMIT],
                action=(action or reason or "Unknown")[:FIELD_LIMIT],
                note=clean_note(note),
                related=rel,
            )
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._results["dropped"].inc()
            log.debug("event queue full; dropped %s event %s", type, reason)
        except Exception:
            self._results["failed"].inc()
            log.exception("could not queue event %s", reason)

    def normal(
        self, regarding: Mapping[str, Any] | ObjectRef, reason: str, note: str, action: str | None = None
    ) -> None:
        self.record(regarding, "Normal", reason, note, action)

    def warning(
        self, regarding: Mapping[str, Any] | ObjectRef, reason: str, note: str, action: str | None = None
    ) -> None:
        self.record(regarding, "Warning", reason, note, action)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-recorder")

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was written (or given up on)."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued for up to `timeout`, then stop; later `record()` calls queue and are lost."""
        if self._task is None:
            return
        await self.flush(timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                async with asyncio.timeout(self.write_timeout):
                    await self._write(item)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                self._results["failed"].inc()
                if _namespace_gone(exc):  # nobody can read an Event there any more
                    log.debug("dropped %s event %s for %s: its namespace is gone", item.type, item.reason,
                              item.ref.name)  # fmt: skip
                else:
                    log.warning(
                        "could not write %s event %s for %s: %r", item.type, item.reason, item.ref.name, exc
                    )
            except Exception as exc:
                self._results["failed"].inc()
                # repr, not str: a bare TimeoutError has an empty message.
                log.warning(
                    "could not write %s event %s for %s: %r", item.type, item.reason, item.ref.name, exc
                )
            finally:
                self._queue.task_done()

    # -- writing -------------------------------------------------------------------------------------

    async def _write(self, item: Pending) -> None:
        key = (item.ref.identity, item.type, item.reason, item.action, item.note)
        decision = self._aggregator.observe(key)
        if decision.action == "filtered":
            self._results["filtered"].inc()
            return
        if decision.series is not None:
            try:
                await self._patch_series(decision.series)
                self._results["aggregated"].inc()
                return
            except ApiError as exc:
                if not exc.is_not_found:
                    raise
                # The Event expired (1 h TTL) or was deleted: start a new one.
                self._aggregator.forget(key)
        name, namespace, api = await self._create(item)
        self._aggregator.created(key, name, namespace, api)
        self._results["created"].inc()

    async def _create(self, item: Pending) -> tuple[str, str, Literal["events", "core"]]:
        namespace = item.ref.namespace or "default"
        name = _event_name(item.ref.name)
        if self._api == "events":
            try:
                await self.client.create(EVENTS.path(namespace), self._events_body(item, name, namespace))
                return name, namespace, "events"
            except ApiError as exc:
                if not (exc.is_not_found or exc.is_forbidden) or _namespace_gone(exc):
                    raise
                await self.client.create(CORE_EVENTS.path(namespace), self._core_body(item, name, namespace))
                log.info(
                    "events.k8s.io/v1 unavailable (%s); recording core/v1 Events from now on", exc.status
                )
                self._api = "core"
                return name, namespace, "core"
        await self.client.create(CORE_EVENTS.path(namespace), self._core_body(item, name, namespace))
        return name, namespace, "core"

    async def _patch_series(self, series: Series) -> None:
        if series.api == "events":
            body: JsonDict = {"series": {"count": series.count, "lastObservedTime": micro_time()}}
            await self.client.patch(EVENTS.path(series.namespace, series.name), body, "merge")
        else:
            body = {"count": series.count, "lastTimestamp": rfc3339()}
            await self.client.patch(CORE_EVENTS.path(series.namespace, series.name), body, "merge")

    def _events_body(self, item: Pending, name: str, namespace: str) -> JsonDict:
        body: JsonDict = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": micro_time(),
            "reportingController": self.reporting_controller,
            "reportingInstance": self.reporting_instance,
            "action": item.action,
            "reason": item.reason,
            "note": item.note,
            "type": item.type,
            "regarding": item.ref.to_dict(),
        }
        if item.related is not None:
            body["related"] = item.related.to_dict()
        return body

    def _core_body(self, item: Pending, name: str, namespace: str) -> JsonDict:
        now = rfc3339()
        body: JsonDict = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": item.ref.to_dict(),
            "reason": item.reason,
            "message": item.note,
            "type": item.type,
            "action": item.action,
            "source": {"component": self.reporting_controller},
            "reportingComponent": self.reporting_controller,
            "reportingInstance": self.reporting_instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        if item.related is not None:
            body["related"] = item.related.to_dict()
        return body
