"""The cache's memory: key → object with named indexes, and what a relist changed.

Objects are stored slimmed (no managedFields, no last-applied annotation) and shared with every handler
and reader: treat them as read-only.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dbaasctl.kube.resources import JsonDict, object_key

log = logging.getLogger(__name__)

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


def namespace_index(obj: JsonDict) -> list[str]:
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
