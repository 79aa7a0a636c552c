"""The storage behind FakeKube: what etcd and the registry do to objects, without the HTTP surface.

One revision counter for every write (a no-op write bumps nothing, emits nothing), generation on spec
changes only, status-subresource rules, immutable metadata, finalizers and deletionTimestamp, and the
event history watches replay from. Set-up and inspection methods here bypass faults and hooks.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dbaasctl.kube.resources import JsonDict, ResourceRef
from dbaasctl.primitives.clock import rfc3339
from support.apierrors import status_error
from support.selectors import Matcher

if TYPE_CHECKING:
    from support.fakewatch import FakeWatch

_Key = tuple[ResourceRef, str | None, str]


class FakeStore:
    def __init__(self, resources: Iterable[ResourceRef], status_subresources: Iterable[ResourceRef]) -> None:
        self._resources: dict[tuple[str, str, str], ResourceRef] = {}
        self._status: set[ResourceRef] = set()
        for ref in resources:
            self.register(ref)
        for ref in status_subresources:
            self.register(ref, status_subresource=True)
        self._objects: dict[_Key, JsonDict] = {}
        self._rv = 0
        self._compacted = 0
        self._log: list[tuple[int, ResourceRef, str, JsonDict]] = []
        self._watches: list[FakeWatch] = []

    # -- set-up and inspection (no faults, no hooks) -------------------------------------------------

    def register(self, ref: ResourceRef, *, status_subresource: bool = False) -> None:
        self._resources[(ref.group, ref.version, ref.plural)] = ref
        if status_subresource:
            self._status.add(ref)

    @property
    def resource_version(self) -> int:
        return self._rv

    def seed(self, ref: ResourceRef, obj: Mapping[str, Any]) -> JsonDict:
        """Create an object directly (status kept as given), as if another client had written it."""
        ns = (obj.get("metadata") or {}).get("namespace") if ref.namespaced else None
        return self._create(ref, ns, copy.deepcopy(dict(obj)), keep_status=True)

    def read(self, ref: ResourceRef, namespace: str | None, name: str) -> JsonDict | None:
        obj = self._objects.get((ref, namespace if ref.namespaced else None, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, ref: ResourceRef, namespace: str | None = None) -> list[JsonDict]:
        return [
            copy.deepcopy(o)
            for (r, ns, _), o in sorted(self._objects.items(), key=lambda kv: kv[0][1:])
            if r == ref and (namespace is None or ns == namespace)
        ]

    def compact(self, resource_version: int | None = None) -> None:
        """Forget history up to `resource_version` (default: now): older watch/continue RVs get 410."""
        self._compacted = self._rv if resource_version is None else resource_version
        self._log = [entry for entry in self._log if entry[0] > self._compacted]

    def _select(self, ref: ResourceRef, namespace: str | None, match: Matcher) -> list[JsonDict]:
        return [
            o
            for (r, ns, _), o in sorted(self._objects.items(), key=lambda kv: kv[0][1:])
            if r == ref and (namespace is None or ns == namespace) and match(o)
        ]

    # -- writes --------------------------------------------------------------------------------------

    def _create(
        self, ref: ResourceRef, namespace: str | None, obj: JsonDict, *, keep_status: bool
    ) -> JsonDict:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name:
            raise status_error(422, "Invalid", "metadata.name: Required value")
        if ref.namespaced:
            if not namespace or meta.get("namespace", namespace) != namespace:
                raise status_error(400, "BadRequest", "the namespace of the object does not match the path")
            meta["namespace"] = namespace
        if (ref, namespace if ref.namespaced else None, name) in self._objects:
            raise status_error(
                409, "AlreadyExists", f'{ref.plural} "{name}" already exists', name=name, kind=ref.plural
            )
        if ref in self._status and not keep_status:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = ref.api_version, ref.kind
        meta |= {"uid": str(uuid.uuid4()), "creationTimestamp": rfc3339(), "generation": 1}
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(transient, None)
        return self._store(ref, obj, "ADDED")

    def _write(self, ref: ResourceRef, subresource: str | None, old: JsonDict, new: JsonDict) -> JsonDict:
        """Apply subresource rules, immutable metadata, generation and finalizer semantics; store."""
        if ref in self._status:
            if subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        fixed_fields = ("name", "namespace", "uid", "creationTimestamp", "generation")
        for fixed in (*fixed_fields, "deletionTimestamp", "deletionGracePeriodSeconds"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = ref.api_version, ref.kind
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise status_error(
                    422, "Invalid", "no new finalizers can be added if the object is being deleted"
                )
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        if new == old:
            return copy.deepcopy(old)
        if _spec_of(new, ref in self._status) != _spec_of(old, ref in self._status):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(ref, new)
        return self._store(ref, new, "MODIFIED")

    def _store(self, ref: ResourceRef, obj: JsonDict, event: str) -> JsonDict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        self._objects[(ref, meta.get("namespace"), meta["name"])] = obj
        self._emit(ref, event, obj)
        return copy.deepcopy(obj)

    def _remove(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        meta = obj["metadata"]
        self._objects.pop((ref, meta.get("namespace"), meta["name"]), None)
        self._rv += 1
        gone_obj = copy.deepcopy(obj)
        gone_obj["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(ref, "DELETED", gone_obj)
        return copy.deepcopy(gone_obj)

    def _emit(self, ref: ResourceRef, event: str, obj: JsonDict) -> None:
        snapshot = copy.deepcopy(obj)
        self._log.append((self._rv, ref, event, snapshot))
        for watch in list(self._watches):
            watch.offer(ref, event, snapshot)


def _spec_of(obj: JsonDict, status_subresource: bool) -> JsonDict:
    drop = {"metadata", "status"} if status_subresource else {"metadata"}
    return {k: v for k, v in obj.items() if k not in drop}
