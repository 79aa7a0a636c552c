"""Values derived from one version of an API object, remembered by (uid, resourceVersion).

A resourceVersion names one immutable state of one object, so whatever is computed from it alone stays
true; a level-based controller looks at the same version on many passes (every event of its neighbours
brings the key back) and need not compute it again. Bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["VersionMemo", "object_version"]

V = TypeVar("V")


def object_version(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(uid, resourceVersion), or None for an object not (yet) read from an API server."""
    meta = obj.get("metadata") or {}
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    return (uid, rv) if uid and rv else None


class VersionMemo(Generic[V]):
    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._values: dict[tuple[str, str], V] = {}

    def get(self, obj: Mapping[str, Any], compute: Callable[[Mapping[str, Any]], V]) -> V:
        version = object_version(obj)
        if version is None:
            return compute(obj)
        try:
            return self._values[version]
        except KeyError:
            pass
        value = compute(obj)
        if len(self._values) >= self.capacity:
            del self._values[next(iter(self._values))]  # the oldest: dicts keep insertion order
        self._values[version] = value
        return value

    def __len__(self) -> int:
        return len(self._values)
