"""What an Event is about, and which Events get written: series aggregation and the spam filter.

- Isomorphic repeats (same object, type, reason, action, note) within `series_window` of the last one
  become a **series**: one Event object whose count is patched, instead of a new object per repeat.
- A per-object token bucket (burst 25, one token per 300 s, client-go's legacy spam filter) stops a
  hot loop from flooding etcd; a filtered repeat still bumps the in-memory count, so the next write
  carries the true total.
- Notes are scrubbed by the logging redactor (registered secrets and DSN/token shapes) and cut to the
  1 kB the API allows.

Pure bookkeeping, no I/O: the rules are unit-tested without an API server.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dbaasctl.kube.resources import JsonDict
from dbaasctl.observability.logging import redact
from dbaasctl.primitives.clock import loop_time
from dbaasctl.primitives.tokenbucket import TokenBucket

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
class Pending:
    ref: ObjectRef
    type: EventType
    reason: str
    action: str
    note: str
    related: ObjectRef | None


@dataclass
class Series:
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
    series: Series | None = None


class Aggregator:
    """Series bookkeeping and the per-object spam filter; pure (no I/O), so its rules are unit-tested."""

    def __init__(
        self,
        *,
        series_window: float = 360.0,
        spam_burst: int = 25,
        spam_refill_seconds: float = 300.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self.series_window = series_window
        self.spam_burst = spam_burst
        self.spam_rate = 1.0 / spam_refill_seconds
        self.cache_size = cache_size
        self._clock = clock
        self._series: OrderedDict[SeriesKey, Series] = OrderedDict()
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

    def created(self, key: SeriesKey, name: str, namespace: str, api: Literal["events", "core"]) -> Series:
        series = Series(name, namespace, api, 1, self._clock())
        self._series[key] = series
        self._series.move_to_end(key)
        while len(self._series) > self.cache_size:
            self._series.popitem(last=False)
        return series

    def forget(self, key: SeriesKey) -> None:
        self._series.pop(key, None)
