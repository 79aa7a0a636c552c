"""One watch on a FakeKube: history replay, live events, bookmarks, server and idle timeouts."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from dbaasctl.kube.errors import ApiError, WatchIdleTimeout
from dbaasctl.kube.resources import JsonDict, ResourceRef
from support.apierrors import gone, status_error
from support.selectors import Matcher

if TYPE_CHECKING:
    from support.fakekube import Call, FakeKube

_END = object()


class FakeWatch:
    """One watch on a FakeKube; implements `dbaasctl.kube.api.WatchEvents`."""

    def __init__(self, kube: FakeKube, path: str, params: dict[str, str], idle_timeout: float | None) -> None:
        self._kube = kube
        self.path = path
        self.params = params
        self._idle_timeout = idle_timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._open = False
        self._finished = False
        self._deadline: float | None = None
        self._next_bookmark: float | None = None
        self.silenced = False
        self.bookmarks = params.get("allowWatchBookmarks") == "true"
        self._call: Call | None = None
        self._match: Matcher = lambda _obj: True

    async def __aenter__(self) -> Self:
        call = await self._kube._enter("watch", self.path, params=self.params)
        if call.name is not None:
            raise status_error(405, "MethodNotAllowed", "watch needs a collection path")
        self._call = call
        self._match = self._kube._matcher(self.params)
        now = asyncio.get_running_loop().time()
        if self.params.get("timeoutSeconds"):
            self._deadline = now + float(self.params["timeoutSeconds"])
        if self.bookmarks and self._kube.bookmark_interval:
            self._next_bookmark = now + self._kube.bookmark_interval
        rv = self.params.get("resourceVersion") or "0"
        if rv == "0":
            for obj in self._kube._select(call.resource, call.namespace, self._match):
                self.push({"type": "ADDED", "object": copy.deepcopy(obj)})
        elif int(rv) < self._kube._compacted:
            self.push({"type": "ERROR", "object": gone().body})
        else:
            for entry_rv, ref, event, obj in self._kube._log:
                if entry_rv > int(rv):
                    self.offer(ref, event, obj)
        self._open = True
        self._kube._watches.append(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    def __aiter__(self) -> AsyncIterator[JsonDict]:
        return self

    def _close(self) -> None:
        self._finished = True
        if self in self._kube._watches:
            self._kube._watches.remove(self)

    def bookmark_object(self, rv: int) -> JsonDict:
        assert self._call is not None
        ref = self._call.resource
        return {"kind": ref.kind, "apiVersion": ref.api_version, "metadata": {"resourceVersion": str(rv)}}

    def offer(self, ref: ResourceRef, event: str, obj: JsonDict) -> None:
        call = self._call
        if call is None or ref != call.resource:
            return
        if call.namespace is not None and obj["metadata"].get("namespace") != call.namespace:
            return
        if self._match(obj):
            self.push({"type": event, "object": copy.deepcopy(obj)})

    def push(self, event: Any) -> None:
        """An event dict, an exception to raise, or the end-of-stream marker."""
        if not self.silenced and not self._finished:
            self._queue.put_nowait(event)

    def end(self, error: BaseException | None) -> None:
        if isinstance(error, ApiError):
            self.push({"type": "ERROR", "object": error.body or {"code": error.status}})
            self.push(_END)
        else:
            self.push(error if error is not None else _END)
        if self in self._kube._watches:
            self._kube._watches.remove(self)

    async def __anext__(self) -> JsonDict:
        if self._finished:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        idle_at = None if self._idle_timeout is None else loop.time() + self._idle_timeout
        while True:
            wake = min(
                (t for t in (idle_at, self._deadline, self._next_bookmark) if t is not None), default=None
            )
            try:
                async with asyncio.timeout_at(wake):
                    item = await self._queue.get()
                break
            except TimeoutError:
                now = loop.time()
                if self._deadline is not None and now >= self._deadline:
                    self._close()
                    raise StopAsyncIteration from None
                if idle_at is not None and now >= idle_at:
                    self._close()
                    raise WatchIdleTimeout(f"watch {self.path}: silent for {self._idle_timeout}s") from None
                self._next_bookmark = now + (self._kube.bookmark_interval or 0.0)
                if not self.silenced:
                    return {"type": "BOOKMARK", "object": self.bookmark_object(self._kube.resource_version)}
        if item is _END:
            self._close()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._close()
            raise item
        if item.get("type") == "ERROR":
            self._close()
            raise ApiError.from_status(item["object"], method="GET", path=self.path)
        return dict(item)
