"""Streaming lists (WatchList, KEP-3157): the initial state as watch events on the watch that follows.

One `GET ?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan` replaces the paged LIST:
the API server streams every object as an ADDED event from its watch cache, then a BOOKMARK annotated
`k8s.io/initial-events-end: "true"` whose resourceVersion is where the state was taken; after it, the
same stream goes on as an ordinary watch. Compared with LIST + WATCH this saves the API server building
(and the client decoding) one large JSON document per page, and the client one request per page.

A server that does not serve it (feature gate off, an older version) answers 400/422 or 403, closes
the stream without the end bookmark, or (ignoring the parameter) sends the objects and then only
ordinary events, so the end bookmark must come within the time a LIST may take; otherwise the reflector
falls back to LIST for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dbaasctl.kube.api import WatchEvents
from dbaasctl.kube.cache.source import ListWatch
from dbaasctl.kube.cache.store import Transform, resource_version
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import JsonDict, object_key

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class WatchListUnsupported(Exception):
    """The server did not stream the initial state: use LIST + WATCH instead."""


def open_watch_list(source: ListWatch, *, timeout_seconds: int, idle_timeout: float) -> WatchEvents:
    params = {
        "labelSelector": source.label_selector,
        "fieldSelector": source.field_selector,
        "sendInitialEvents": True,
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": True,
        "timeoutSeconds": timeout_seconds,
    }
    return source.api.watch(source.path, params, idle_timeout=idle_timeout)


def unsupported(exc: ApiError) -> bool:
    """Answers meaning "this server does not do streaming lists" (rather than "try again later")."""
    return exc.status in (400, 403, 405, 415, 422)


async def initial_state(
    stream: WatchEvents, transform: Transform, heard: Callable[[], None], budget: float
) -> tuple[dict[str, JsonDict], str]:
    """`_initial_state` within `budget` seconds, or `WatchListUnsupported`."""
    try:
        async with asyncio.timeout(budget):
            return await _initial_state(stream, transform, heard)
    except TimeoutError:
        raise WatchListUnsupported(f"no initial-events-end bookmark within {budget:.0f}s") from None


async def _initial_state(
    stream: WatchEvents, transform: Transform, heard: Callable[[], None]
) -> tuple[dict[str, JsonDict], str]:
    """Consume the stream up to the initial-events-end bookmark: every object by key, and the bookmark's
    resourceVersion (where the ordinary watch on the same stream continues).

    Raises `WatchListUnsupported` when the stream ends first or an event is not one the initial state
    can hold; the stream's own errors (ApiError, connection errors) propagate.
    """
    items: dict[str, JsonDict] = {}
    async for event in stream:
        heard()
        kind = event.get("type")
        raw = event.get("object")
        if not isinstance(raw, dict):
            raise ValueError(f"watch event without object: {kind}")
        if kind == "BOOKMARK":
            annotations = (raw.get("metadata") or {}).get("annotations") or {}
            if annotations.get(INITIAL_EVENTS_END) == "true":
                return items, resource_version(raw)
            continue
        obj = transform(raw)
        if kind in ("ADDED", "MODIFIED"):
            items[object_key(obj)] = obj
        elif kind == "DELETED":
            items.pop(object_key(obj), None)
        else:
            raise ValueError(f"unknown watch event type {kind!r}")
    raise WatchListUnsupported("the stream ended before the initial-events-end bookmark")
