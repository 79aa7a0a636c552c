"""The reflector: keeps a Store equal to the API server's view of one ListWatch (client-go's Reflector).

The loop, and why each step is as it is:
- **List** (see `ListWatch`), then diff against the store: adds, updates (changed resourceVersion
  only) and deletes for keys that vanished while we were not watching, delivered as
  `DeletedFinalStateUnknown` tombstones.
- **Watch** from the list's resourceVersion with bookmarks and a random 300-600 s server timeout
  (spreads reconnects). A normal close re-watches at once from the last resourceVersion. Every event
  and bookmark advances it and the "last heard" time. Silence beyond the idle timeout (bookmarks come
  every ~60 s) means the stream is dead behind some proxy: reconnect from the same resourceVersion.
- **Streaming list** (`watch_list=True`, see `watchlist`): the list step is one watch that first
  streams the initial state, then goes on as the watch above; a server that does not serve it makes
  the reflector fall back to LIST for good.
- **410 Gone / too-large resourceVersion** (an ERROR event or the watch answer) → relist and diff.
  Connection errors and 429 → back off (0.8 s doubling, jitter, cap 30 s, reset after 2 min without
  trouble) and re-watch. Other API errors (403 while RBAC is being fixed, 500) → back off and relist.
  Nothing makes it give up; the informer's supervisor restarts it if it crashes.

Times are event-loop times, so tests can run the loop on virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from dbaasctl.kube.cache.source import ListWatch
from dbaasctl.kube.cache.store import Delta, Store, Transform, relist_deltas, resource_version, slim
from dbaasctl.kube.cache.watchlist import WatchListUnsupported, initial_state, open_watch_list, unsupported
from dbaasctl.kube.errors import ApiError, WatchIdleTimeout
from dbaasctl.kube.resources import JsonDict, object_key
from dbaasctl.observability.logging import trace
from dbaasctl.primitives.clock import loop_time

log = logging.getLogger(__name__)

Notify = Callable[[Delta], None]
_CONNECTION_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError)


class Backoff:
    """client-go's reflector backoff: initial 0.8 s, doubling, capped at 30 s, then jitter (so 30-60 s)."""

    def __init__(
        self,
        initial: float = 0.8,
        factor: float = 2.0,
        cap: float = 30.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        clock: Callable[[], float] = loop_time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.factor, self.cap = initial, factor, cap
        self.jitter, self.reset_after = jitter, reset_after
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


@dataclass
class ReflectorHealth:
    """For probes and debugging; times are event-loop times."""

    synced: bool = False
    alive: bool = False
    last_heard: float | None = None
    last_progress: float = 0.0
    last_error: str | None = None
    resource_version: str = ""
    lists: int = 0
    watches: int = 0
    crashes: int = 0


class Reflector:
    def __init__(
        self,
        source: ListWatch,
        store: Store,
        notify: Notify,
        *,
        name: str,
        transform: Transform = slim,
        idle_timeout: float = 80.0,
        watch_timeout: tuple[int, int] = (300, 600),
        backoff: Backoff | None = None,
        health: ReflectorHealth | None = None,
        watch_list: bool = False,
    ) -> None:
        self.source = source
        self.store = store
        self.notify = notify
        self.name = name
        self.transform = transform
        self.idle_timeout = idle_timeout
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.health = health or ReflectorHealth(last_progress=loop_time())
        self.synced = asyncio.Event()
        self._rv = ""
        self._last_list_at = float("-inf")
        self.watch_list = watch_list
        self._streamed = False

    @property
    def resource_version(self) -> str:
        return self._rv

    # -- liveness bookkeeping ------------------------------------------------------------------------

    def progress(self) -> None:
        self.health.last_progress = loop_time()

    def _heard(self) -> None:
        now = loop_time()
        self.health.last_heard = now
        self.health.last_progress = now

    def failed(self, what: str, exc: BaseException) -> None:
        self.health.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self.progress()

    async def sleep(self, delay: float) -> None:
        self.progress()
        await asyncio.sleep(delay)
        self.progress()

    # -- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        need_list = True
        while True:
            self.progress()
            if need_list and self.watch_list:
                self._streamed = False
                again = await self._watch_and_recover(initial=True)
                need_list = again or not self._streamed
                continue
            if need_list:
                try:
                    await self._list_and_replace()
                except (ApiError, *_CONNECTION_ERRORS) as exc:
                    self.failed("list", exc)
                    delay = self._retry_delay(exc)
                    log.warning("informer %s: list failed (%s); retrying in %.1fs", self.name, exc, delay)
                    await self.sleep(delay)
                    continue
                need_list = False
            need_list = await self._watch_and_recover()

    async def _watch_and_recover(self, *, initial: bool = False) -> bool:
        """One watch (`initial`: a streaming list first) and the reaction to how it ended; True when the
        next step must be a relist."""
        try:
            very_short = await self._watch_once(initial=initial)
        except WatchListUnsupported as exc:
            self._no_watch_list(exc)
            return True
        except ApiError as exc:
            self.failed("watch", exc)
            if initial and not self._streamed and unsupported(exc):
                self._no_watch_list(exc)
                return True
            if exc.is_gone or exc.is_resource_version_too_large:
                log.info("informer %s: resourceVersion %s is gone (%s); relisting", self.name, self._rv, exc)
                if loop_time() - self._last_list_at < 1.0:
                    await self.sleep(self.backoff.next())
                return True
            delay = self._retry_delay(exc)
            log.warning("informer %s: watch failed (%s); retrying in %.1fs", self.name, exc, delay)
            await self.sleep(delay)
            # A 429 is only "slow down"; anything else may hide changes we cannot see: relist.
            return not exc.is_too_many_requests
        except WatchIdleTimeout as exc:
            # A silent stream is already a long wait; reconnect at once from the same resourceVersion.
            self.failed("watch", exc)
            if initial and not self._streamed:  # a server that streams lists sends them at once
                self._no_watch_list(exc)
                return True
            log.info("informer %s: %s; reconnecting", self.name, exc)
        except _CONNECTION_ERRORS as exc:
            self.failed("watch", exc)
            delay = self.backoff.next()
            log.info("informer %s: watch connection lost (%s); re-watching in %.1fs", self.name, exc, delay)
            await self.sleep(delay)
        else:
            if very_short:
                delay = self.backoff.next()
                log.info("informer %s: watch closed at once; re-watching in %.1fs", self.name, delay)
                await self.sleep(delay)
        return False

    def _retry_delay(self, exc: BaseException) -> float:
        if isinstance(exc, ApiError) and exc.is_too_many_requests and exc.retry_after is not None:
            return exc.retry_after
        return self.backoff.next()

    def _no_watch_list(self, exc: BaseException) -> None:
        log.warning("informer %s: no streaming list from this server (%s); using LIST", self.name, exc)
        self.watch_list = False

    async def _list_and_replace(self) -> None:
        items, rv = await self.source.list_all(self.transform, self._heard)
        self._replace(items, rv)

    def _replace(self, items: dict[str, JsonDict], rv: str) -> None:
        self._last_list_at = loop_time()
        self.health.lists += 1
        old = self.store.replace(items)
        for delta in relist_deltas(old, items):
            self.notify(delta)
        self._set_rv(rv)
        if not self.synced.is_set():
            self.synced.set()
            self.health.synced = True
            log.info("informer %s synced: %d objects at resourceVersion %s", self.name, len(items), rv)
        else:
            log.info("informer %s relisted: %d objects at resourceVersion %s", self.name, len(items), rv)

    def _set_rv(self, rv: str) -> None:
        if rv:
            self._rv = rv
            self.health.resource_version = rv

    async def _watch_once(self, *, initial: bool = False) -> bool:
        """One watch request; True when it closed in under a second with nothing delivered."""
        timeout_seconds = random.randint(self.watch_timeout[0], max(self.watch_timeout) - 1)
        started = loop_time()
        delivered = 0
        self.health.watches += 1
        if initial:
            stream = open_watch_list(
                self.source, timeout_seconds=timeout_seconds, idle_timeout=self.idle_timeout
            )
        else:
            stream = self.source.watch(
                self._rv, timeout_seconds=timeout_seconds, idle_timeout=self.idle_timeout
            )
        async with stream:
            self._heard()
            if initial:
                items, rv = await initial_state(stream, self.transform, self._heard, self.source.list_timeout)
                self._replace(items, rv)
                self._streamed = True
            trace(log, "informer %s: watching from %s", self.name, self._rv)
            async for event in stream:
                self._heard()
                delivered += 1
                self.apply(event)
        return delivered == 0 and loop_time() - started < 1.0

    def apply(self, event: JsonDict) -> None:
        """One watch event into the store and out to `notify`; a bookmark only moves the resourceVersion."""
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
            self.notify(Delta("add", key, obj) if old is None else Delta("update", key, obj, old))
        elif kind == "DELETED":
            old = self.store.pop(key)
            self.notify(Delta("delete", key, obj, old))
        else:
            raise ValueError(f"unknown watch event type {kind!r}")
        self._set_rv(rv)
