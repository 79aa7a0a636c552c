"""Kubernetes Event recorder: events.k8s.io/v1 first, core/v1 as fallback; aggregated, filtered, never blocking.

- `record()` is a plain method that only appends to a bounded queue: a reconcile never waits for, and
  never fails because of, an Event. A background task writes them; when the queue is full the event is
  dropped and counted.
- Isomorphic repeats (same object, type, reason, action, note) within `series_window` of the last one
  become a **series**: one Event object whose `series.count` / `lastObservedTime` are patched, instead of
  a new object per repeat (core/v1: `count` / `lastTimestamp`).
- A per-object token bucket (burst 25, one token per 300 s, client-go's legacy spam filter) stops a
  hot loop from flooding etcd; a filtered repeat still bumps the in-memory count, so the next write
  carries the true total.
- Notes are scrubbed by the logging redactor (registered secrets and DSN/token shapes) and cut to the
  1 kB the API allows; the raw dict carries a MicroTime with 6 fractional digits, which the API requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import CORE_EVENTS, EVENTS, JsonDict
from dbaasctl.observability import metrics as m
from dbaasctl.observability.logging import redact
from dbaasctl.primitives.clock import micro_time, rfc3339
from dbaasctl.primitives.tokenbucket import TokenBucket

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
NOTE_LIMIT = 1024
FIELD_LIMIT = 128


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about (`regarding` / `involvedObject`)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion") or ""),
            kind=str(obj.get("kind") or ""),
            name=str(meta.get("name") or ""),
            namespace=meta.get("namespace") or None,
            uid=meta.get("uid") or None,
            resource_version=meta.get("resourceVersion") or None,
        )

    def to_dict(self) -> JsonDict:
        out: JsonDict = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        return out

    @property
    def identity(self) -> str:
        return self.uid or f"{self.api_version}/{self.kind}/{self.namespace or ''}/{self.name}"


def truncate_utf8(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8, cut on a character boundary, marked with an ellipsis."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    marker = "…"
    room = limit - len(marker.encode())
    if room < 0:
        return raw[:limit].decode(errors="ignore")
    return raw[:room].decode(errors="ignore") + marker


def clean_note(note: str) -> str:
    return truncate_utf8(redact(note), NOTE_LIMIT)


@dataclass
class _Pending:
    ref: ObjectRef
    type: EventType
    reason: str
    action: str
    note: str
    related: ObjectRef | None


@dataclass
class _Series:
    name: str
    namespace: str
    api: Literal["events", "core"]
    count: int
    last_seen: float


SeriesKey = tuple[str, str, str, str, str]  # object identity, type, reason, action, note


@dataclass
class Decision:
    """`create` a new Event, `patch` `series` (already bumped), or drop it as spam (`filtered`)."""

    action: Literal["create", "patch", "filtered"]
    series: _Series | None = None


class Aggregator:
    """Series bookkeeping and the per-object spam filter; pure (no I/O), so its rules are unit-tested."""

    def __init__(
        self,
        *,
        series_window: float = 360.0,
        spam_burst: int = 25,
        spam_refill_seconds: float = 300.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.series_window = series_window
        self.spam_burst = spam_burst
        self.spam_rate = 1.0 / spam_refill_seconds
        self.cache_size = cache_size
        self._clock = clock
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _allowed(self, identity: str) -> bool:
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = TokenBucket(self.spam_rate, self.spam_burst, clock=self._clock)
            self._buckets[identity] = bucket
            while len(self._buckets) > self.cache_size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(identity)
        return bucket.try_take()

    def observe(self, key: SeriesKey) -> Decision:
        now = self._clock()
        series = self._series.get(key)
        if series is not None and now - series.last_seen <= self.series_window:
            # A filtered repeat still counts, so the next write carries the true total.
            series.count += 1
            series.last_seen = now
            self._series.move_to_end(key)
            if not self._allowed(key[0]):
                return Decision("filtered")
            return Decision("patch", series)
        if series is not None:
            del self._series[key]  # the series finished; a repeat now starts a new Event
        if not self._allowed(key[0]):
            return Decision("filtered")
        return Decision("create")

    def created(self, key: SeriesKey, name: str, namespace: str, api: Literal["events", "core"]) -> _Series:
        series = _Series(name, namespace, api, 1, self._clock())
        self._series[key] = series
        self._series.move_to_end(key)
        while len(self._series) > self.cache_size:
            self._series.popitem(last=False)
        return series

    def forget(self, key: SeriesKey) -> None:
        self._series.pop(key, None)


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
        clock: Callable[[], float] = time.monotonic,
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
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
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
            item = _Pending(
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

    async def _write(self, item: _Pending) -> None:
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

    async def _create(self, item: _Pending) -> tuple[str, str, Literal["events", "core"]]:
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

    async def _patch_series(self, series: _Series) -> None:
        if series.api == "events":
            body: JsonDict = {"series": {"count": series.count, "lastObservedTime": micro_time()}}
            await self.client.patch(EVENTS.path(series.namespace, series.name), body, "merge")
        else:
            body = {"count": series.count, "lastTimestamp": rfc3339()}
            await self.client.patch(CORE_EVENTS.path(series.namespace, series.name), body, "merge")

    def _events_body(self, item: _Pending, name: str, namespace: str) -> JsonDict:
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

    def _core_body(self, item: _Pending, name: str, namespace: str) -> JsonDict:
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
