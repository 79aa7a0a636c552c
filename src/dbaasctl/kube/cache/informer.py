"""The informer: a Reflector-fed cache of one resource type, with handlers, resync and has_synced.

Handlers are plain functions called in order with each change; they should only enqueue keys. A
**supervisor** restarts the reflector if it ever crashes (a bug, a malformed event) and `check_alive`
reports a dead or stuck loop to the liveness probe: a silently dead watcher is the classic failure of
Python operators.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.cache.reflector import Backoff, Reflector
from dbaasctl.kube.cache.source import ListWatch
from dbaasctl.kube.cache.store import (
    NAMESPACE_INDEX,
    Delta,
    IndexFunc,
    Store,
    Transform,
    namespace_index,
    slim,
)
from dbaasctl.kube.resources import JsonDict, ResourceRef, object_key
from dbaasctl.primitives.clock import loop_time

log = logging.getLogger(__name__)

AddHandler = Callable[[JsonDict], None]
UpdateHandler = Callable[[JsonDict, JsonDict], None]
DeleteHandler = Callable[[JsonDict], None]


@dataclass
class _Handlers:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


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
        watch_list: bool = False,
    ) -> None:
        self.source = ListWatch(
            client,
            resource,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            page_size=page_size,
            list_timeout=list_timeout,
        )
        self.resource = resource
        self.namespace = namespace
        self.resync_period = resync_period
        self.liveness_budget = liveness_budget
        self.name = name or (f"{resource.plural}.{resource.group}" if resource.group else resource.plural)
        self.store = Store({NAMESPACE_INDEX: namespace_index, **(indexers or {})})
        self.reflector = Reflector(
            self.source,
            self.store,
            self._dispatch,
            name=self.name,
            transform=transform,
            idle_timeout=idle_timeout,
            watch_timeout=watch_timeout,
            backoff=backoff,
            watch_list=watch_list,
        )
        self.health = self.reflector.health
        self._handlers: list[_Handlers] = []
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None

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
        return self.reflector.synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.reflector.synced.wait()
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
        return self.reflector.resource_version

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._supervise(), name=f"informer:{self.name}")
        if self.resync_period:
            self._resync_task = loop.create_task(self._resync_loop(), name=f"resync:{self.name}")

    async def stop(self) -> None:
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
        stalled = loop_time() - self.health.last_progress
        if stalled > self.liveness_budget:
            return f"no progress for {stalled:.0f}s"
        return None

    def check_synced(self) -> str | None:
        return None if self.has_synced else "not synced"

    async def _supervise(self) -> None:
        self.health.alive = True
        crash_backoff = Backoff()
        try:
            while True:
                try:
                    await self.reflector.run()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.health.crashes += 1
                    self.reflector.failed("crash", exc)
                    log.exception("informer %s crashed; restarting it with a relist", self.name)
                    await self.reflector.sleep(crash_backoff.next())
        finally:
            self.health.alive = False

    async def _resync_loop(self) -> None:
        assert self.resync_period
        period = max(1.0, self.resync_period)
        await self.reflector.synced.wait()
        while True:
            await asyncio.sleep(period)
            for obj in self.store.list():
                self._emit_update(obj, obj)

    # -- handler dispatch ----------------------------------------------------------------------------

    def _dispatch(self, delta: Delta) -> None:
        if delta.type == "add":
            self._emit_add(delta.new)
        elif delta.type == "update":
            assert delta.old is not None
            self._emit_update(delta.old, delta.new)
        else:
            self._emit_delete(delta.new)

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
