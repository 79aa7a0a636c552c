"""List-then-watch cache of one resource type (client-go's Reflector + Indexer + informer, in asyncio).

The loop, and why each step is as it is:
- **List**, paged (500 per page), with resourceVersion unset: a consistent read. Stale state is dangerous
  for an operator that drops databases, and object counts are small. A 410 on a continue token restarts
  the list. The result is diffed against the store: adds, updates (changed RV only) and deletes for keys
  that vanished while we were not watching, delivered as `DeletedFinalStateUnknown` (a dict subclass
  holding the last state we knew). The **collection** resourceVersion is where the watch starts; never
  an item's RV, which would replay history or miss it.
- **Watch** from that RV with bookmarks and a random 300-600 s server timeout (spreads reconnects). A
  normal close re-watches at once from the last RV. Every event and bookmark advances the RV and the
  "last heard" time. Silence beyond the idle timeout (bookmarks come every ~60 s) means the stream is
  dead behind some proxy: reconnect from the same RV.
- **410 Gone / too-large RV** (an ERROR event or the watch answer) → relist and diff. Connection errors
  and 429 → back off (0.8 s doubling, jitter, cap 30 s, reset after 2 min without trouble), re-watch.
  Other API errors (403 while RBAC is being fixed, 500) → back off and relist. Nothing makes it give up.
- A **supervisor** restarts the loop if it ever crashes (a bug, a malformed event) and `check_alive`
  reports a dead or stuck loop to the liveness probe: a silently dead watcher is the classic failure
  of Python operators.

Handlers are plain functions called in order with each change; they should only enqueue keys. Objects
are stored slimmed (no managedFields, no last-applied annotation) and must be treated as read-only.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import ApiError, WatchIdleTimeout
from dbaasctl.kube.resources import JsonDict, ResourceRef, object_key
from dbaasctl.observability.logging import trace

log = logging.getLogger(__name__)

AddHandler = Callable[[JsonDict], None]
UpdateHandler = Callable[[JsonDict, JsonDict], None]
DeleteHandler = Callable[[JsonDict], None]
IndexFunc = Callable[[JsonDict], Iterable[str]]
Transform = Callable[[JsonDict], JsonDict]

NAMESPACE_INDEX = "namespace"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class DeletedFinalStateUnknown(dict[str, Any]):
    """The last known state of an object whose deletion happened while we were not watching.

    A dict (the object as we last saw it), so handlers that only need name/namespace/labels work
    unchanged; `isinstance` tells the cases apart when it matters (the object may have changed after).
    """

    def __init__(self, key: str, obj: Mapping[str, Any]) -> None:
        super().__init__(obj)
        self.key = key


def slim(obj: JsonDict) -> JsonDict:
    """Drop what a controller never reads but costs memory on every object."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            del annotations[LAST_APPLIED]
            if not annotations:
                del meta["annotations"]
    return obj


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _namespace_index(obj: JsonDict) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


@dataclass(frozen=True)
class Delta:
    type: Literal["add", "update", "delete"]
    key: str
    new: JsonDict  # for a delete: the tombstone
    old: JsonDict | None = None


def relist_deltas(old: Mapping[str, JsonDict], new: Mapping[str, JsonDict]) -> list[Delta]:
    """What handlers must hear when a fresh list replaces the cache.

    New keys are adds; keys whose resourceVersion changed are updates (unchanged ones are silent: a relist
    after a 410 would otherwise reconcile everything); vanished keys are deletes carrying a
    `DeletedFinalStateUnknown` with the last state we knew, since the real DELETED event was missed.
    """
    deltas: list[Delta] = []
    for key, obj in new.items():
        prev = old.get(key)
        if prev is None:
            deltas.append(Delta("add", key, obj))
        elif resource_version(prev) != resource_version(obj):
            deltas.append(Delta("update", key, obj, prev))
    for key in old.keys() - new.keys():
        deltas.append(Delta("delete", key, DeletedFinalStateUnknown(key, old[key]), old[key]))
    return deltas


class Backoff:
    """client-go's reflector backoff: initial 0.8 s, doubling, capped at 30 s, then jitter (so 30-60 s)."""

    def __init__(
        self,
        initial: float = 0.8,
        factor: float = 2.0,
        cap: float = 30.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.factor, self.cap, self.jitter, self.reset_after = (
            initial,
            factor,
            cap,
            jitter,
            reset_after,
        )
        self._clock, self._rand = clock, rand
        self._step = initial
        self._last: float | None = None

    def next(self) -> float:
        now = self._clock()
        if self._last is not None and now - self._last > self.reset_after:
            self._step = self.initial
        delay = self._step
        self._step = min(self._step * self.factor, self.cap)
        self._last = now
        return delay + delay * self.jitter * self._rand()

    def reset(self) -> None:
        self._step = self.initial
        self._last = None


class Store:
    """key → object plus named indexes (value → keys), like client-go's threadSafeStore without threads."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, JsonDict] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._values: dict[str, dict[str, tuple[str, ...]]] = {}
        for name, fn in (indexers or {}).items():
            self.add_indexer(name, fn)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        if name in self._indexers:
            raise ValueError(f"indexer {name!r} already exists")
        self._indexers[name] = fn
        self._reindex(name)

    def _reindex(self, name: str) -> None:
        self._indices[name] = {}
        self._values[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def _compute(self, name: str, obj: JsonDict) -> tuple[str, ...]:
        try:
            return tuple(dict.fromkeys(self._indexers[name](obj)))
        except Exception:
            log.exception("index function %r failed for %s", name, object_key(obj))
            return ()

    def _index_one(self, name: str, key: str, obj: JsonDict) -> None:
        values = self._compute(name, obj)
        if values:
            self._values[name][key] = values
            index = self._indices[name]
            for value in values:
                index.setdefault(value, set()).add(key)

    def _unindex_one(self, name: str, key: str) -> None:
        index = self._indices[name]
        for value in self._values[name].pop(key, ()):
            keys = index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[value]

    def set(self, key: str, obj: JsonDict) -> JsonDict | None:
        old = self._items.get(key)
        self._items[key] = obj
        for name in self._indexers:
            if old is not None:
                self._unindex_one(name, key)
            self._index_one(name, key, obj)
        return old

    def pop(self, key: str) -> JsonDict | None:
        old = self._items.pop(key, None)
        if old is not None:
            for name in self._indexers:
                self._unindex_one(name, key)
        return old

    def replace(self, items: Mapping[str, JsonDict]) -> dict[str, JsonDict]:
        """Swap in a new content; returns the old content."""
        old = self._items
        self._items = dict(items)
        for name in self._indexers:
            self._reindex(name)
        return old

    def get(self, key: str) -> JsonDict | None:
        return self._items.get(key)

    def list(self) -> builtins.list[JsonDict]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def index_keys(self, name: str, value: str) -> builtins.list[str]:
        if name not in self._indices:
            raise KeyError(f"no indexer {name!r}")
        return sorted(self._indices[name].get(value, ()))

    def by_index(self, name: str, value: str) -> builtins.list[JsonDict]:
        return [self._items[k] for k in self.index_keys(name, value)]

    def index_values(self, name: str) -> builtins.list[str]:
        if name not in self._indices:
            raise KeyError(f"no indexer {name!r}")
        return sorted(self._indices[name])


@dataclass
class _Handlers:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


@dataclass
class InformerHealth:
    """For probes and debugging; times are `time.monotonic()` values."""

    synced: bool = False
    alive: bool = False
    last_heard: float | None = None
    last_progress: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    resource_version: str = ""
    lists: int = 0
    watches: int = 0
    crashes: int = 0


class Informer:
    """Cache of one resource type, in one namespace or cluster-wide. Create inside the running loop."""

    def __init__(
        self,
        client: KubeApi,
        resource: ResourceRef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        resync_period: float | None = None,
        idle_timeout: float = 80.0,
        page_size: int = 500,
        watch_timeout: tuple[int, int] = (300, 600),
        list_timeout: float = 60.0,
        liveness_budget: float = 300.0,
        transform: Transform = slim,
        name: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if namespace and not resource.namespaced:
            raise ValueError(f"{resource.plural} is cluster-scoped")
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.idle_timeout = idle_timeout
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.list_timeout = list_timeout
        self.liveness_budget = liveness_budget
        self.transform = transform
        self.name = name or (f"{resource.plural}.{resource.group}" if resource.group else resource.plural)
        self.path = resource.path(namespace)
        self.store = Store({NAMESPACE_INDEX: _namespace_index, **(indexers or {})})
        self.health = InformerHealth()
        self._handlers: list[_Handlers] = []
        self._backoff = backoff or Backoff()
        self._rv = ""
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_list_at = 0.0

    # -- registration --------------------------------------------------------------------------------

    def add_handlers(
        self,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
    ) -> None:
        """Register handlers; a late registration first gets an add for every cached object."""
        handlers = _Handlers(on_add, on_update, on_delete)
        self._handlers.append(handlers)
        if self.has_synced and on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        self.store.add_indexer(name, fn)

    # -- reads ---------------------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    def get(self, key: str) -> JsonDict | None:
        return self.store.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> JsonDict | None:
        return self.store.get(self.resource.key(namespace, name))

    def list(self) -> builtins.list[JsonDict]:
        return self.store.list()

    def keys(self) -> builtins.list[str]:
        return self.store.keys()

    def by_index(self, index: str, value: str) -> builtins.list[JsonDict]:
        return self.store.by_index(index, value)

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return self.store.index_keys(index, value)

    @property
    def resource_version(self) -> str:
        return self._rv

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._supervise(), name=f"informer:{self.name}")
        if self.resync_period:
            self._resync_task = loop.create_task(self._resync_loop(), name=f"resync:{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
        for task in (self._task, self._resync_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._resync_task = None
        self.health.alive = False

    def check_alive(self) -> str | None:
        """None when healthy; otherwise why the liveness probe should fail."""
        if self._task is None:
            return None  # not started yet, or stopped on purpose
        if self._task.done():
            return "watch task ended"
        stalled = time.monotonic() - self.health.last_progress
        if stalled > self.liveness_budget:
            return f"no progress for {stalled:.0f}s"
        return None

    def check_synced(self) -> str | None:
        return None if self.has_synced else "not synced"

    # -- the loop ------------------------------------------------------------------------------------

    def _progress(self) -> None:
        self.health.last_progress = time.monotonic()

    def _heard(self) -> None:
        now = time.monotonic()
        self.health.last_heard = now
        self.health.last_progress = now

    def _failed(self, what: str, exc: BaseException) -> None:
        self.health.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self._progress()

    async def _sleep(self, delay: float) -> None:
        self._progress()
        await asyncio.sleep(delay)
        self._progress()

    async def _supervise(self) -> None:
        self.health.alive = True
        crash_backoff = Backoff()
        try:
            while True:
                try:
                    await self._run()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.health.crashes += 1
                    self._failed("crash", exc)
                    log.exception("informer %s crashed; restarting it with a relist", self.name)
                    await self._sleep(crash_backoff.next())
        finally:
            self.health.alive = False

    async def _run(self) -> None:
        need_list = True
        while True:
            self._progress()
            if need_list:
                try:
                    await self._list_and_replace()
                except (ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    self._failed("list", exc)
                    delay = self._retry_delay(exc)
                    log.warning("informer %s: list failed (%s); retrying in %.1fs", self.name, exc, delay)
                    await self._sleep(delay)
                    continue
                need_list = False
            try:
                very_short = await self._watch_once()
            except ApiError as exc:
                self._failed("watch", exc)
                if exc.is_gone or exc.is_resource_version_too_large:
                    log.info(
                        "informer %s: resourceVersion %s is gone (%s); relisting", self.name, self._rv, exc
                    )
                    need_list = True
                    if time.monotonic() - self._last_list_at < 1.0:
                        await self._sleep(self._backoff.next())
                    continue
                delay = self._retry_delay(exc)
                log.warning("informer %s: watch failed (%s); retrying in %.1fs", self.name, exc, delay)
                await self._sleep(delay)
                # A 429 is only "slow down"; anything else may hide changes we cannot see: relist.
                need_list = not exc.is_too_many_requests
            except WatchIdleTimeout as exc:
                # A silent stream is already a long wait; reconnect at once from the same RV.
                self._failed("watch", exc)
                log.info("informer %s: %s; reconnecting", self.name, exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self._failed("watch", exc)
                delay = self._backoff.next()
                log.info(
                    "informer %s: watch connection lost (%s); re-watching in %.1fs", self.name, exc, delay
                )
                await self._sleep(delay)
            else:
                if very_short:
                    delay = self._backoff.next()
                    log.info("informer %s: watch closed at once; re-watching in %.1fs", self.name, delay)
                    await self._sleep(delay)

    def _retry_delay(self, exc: BaseException) -> float:
        if isinstance(exc, ApiError) and exc.is_too_many_requests and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff.next()

    def _base_params(self) -> dict[str, str | int | bool | None]:
        return {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}

    async def _list_all(self) -> tuple[dict[str, JsonDict], str]:
        restarts = 0
        while True:
            items: dict[str, JsonDict] = {}
            token: str | None = None
            try:
                while True:
                    params = {**self._base_params(), "limit": self.page_size, "continue": token}
                    page = await self.client.list(self.path, params, timeout=self.list_timeout)
                    self._heard()
                    kind = str(page.get("kind") or "").removesuffix("List") or self.resource.kind
                    api_version = page.get("apiVersion") or self.resource.api_version
                    for item in page.get("items") or []:
                        # List items carry no kind/apiVersion; watch events do. Make them alike.
                        item.setdefault("apiVersion", api_version)
                        if kind:
                            item.setdefault("kind", kind)
                        obj = self.transform(item)
                        items[object_key(obj)] = obj
                    meta = page.get("metadata") or {}
                    token = meta.get("continue") or None
                    if token is None:
                        return items, str(meta.get("resourceVersion") or "")
            except ApiError as exc:
                if exc.is_gone and token is not None and restarts < 3:
                    restarts += 1
                    log.info("informer %s: list continuation expired; restarting the list", self.name)
                    continue
                raise

    async def _list_and_replace(self) -> None:
        items, rv = await self._list_all()
        self._last_list_at = time.monotonic()
        self.health.lists += 1
        old = self.store.replace(items)
        for delta in relist_deltas(old, items):
            if delta.type == "add":
                self._emit_add(delta.new)
            elif delta.type == "update":
                assert delta.old is not None
                self._emit_update(delta.old, delta.new)
            else:
                self._emit_delete(delta.new)
        self._set_rv(rv)
        if not self._synced.is_set():
            self._synced.set()
            self.health.synced = True
            log.info("informer %s synced: %d objects at resourceVersion %s", self.name, len(items), rv)
        else:
            log.info("informer %s relisted: %d objects at resourceVersion %s", self.name, len(items), rv)

    def _set_rv(self, rv: str) -> None:
        if rv:
            self._rv = rv
            self.health.resource_version = rv

    async def _watch_once(self) -> bool:
        """One watch request; True when it closed in under a second with nothing delivered."""
        params = {
            **self._base_params(),
            "resourceVersion": self._rv,
            "allowWatchBookmarks": True,
            "timeoutSeconds": random.randint(self.watch_timeout[0], max(self.watch_timeout) - 1),
        }
        started = time.monotonic()
        delivered = 0
        self.health.watches += 1
        async with self.client.watch(self.path, params, idle_timeout=self.idle_timeout) as stream:
            self._heard()
            trace(log, "informer %s: watching from %s", self.name, self._rv)
            async for event in stream:
                self._heard()
                delivered += 1
                self._apply(event)
        return delivered == 0 and time.monotonic() - started < 1.0

    def _apply(self, event: JsonDict) -> None:
        kind = event.get("type")
        raw = event.get("object")
        if not isinstance(raw, dict):
            raise ValueError(f"watch event without object: {kind}")
        rv = resource_version(raw)
        if kind == "BOOKMARK":
            self._set_rv(rv)
            return
        obj = self.transform(raw)
        key = object_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            old = self.store.set(key, obj)
            if old is None:
                self._emit_add(obj)
            else:
                self._emit_update(old, obj)
        elif kind == "DELETED":
            self.store.pop(key)
            self._emit_delete(obj)
        else:
            raise ValueError(f"unknown watch event type {kind!r}")
        self._set_rv(rv)

    # -- handler dispatch ----------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: JsonDict) -> None:
        try:
            fn(*args)
        except Exception:
            key = object_key(args[-1])
            log.exception(
                "informer %s: handler %s failed for %s", self.name, getattr(fn, "__name__", fn), key
            )

    def _emit_add(self, obj: JsonDict) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _emit_update(self, old: JsonDict, new: JsonDict) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _emit_delete(self, obj: JsonDict) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    async def _resync_loop(self) -> None:
        assert self.resync_period
        period = max(1.0, self.resync_period)
        await self._synced.wait()
        while True:
            await asyncio.sleep(period)
            for obj in self.store.list():
                self._emit_update(obj, obj)
