"""FakeKube: an in-memory API server behind the `KubeApi` protocol, for unit tests of the kit and controllers.

It keeps the semantics a controller relies on, the way kube-apiserver over etcd has them:
- one global resourceVersion counter, bumped by every write (a no-op write bumps nothing, emits nothing);
- `metadata.generation` bumped on spec changes only (everything but metadata and status);
- status subresources for the types registered with one: a main-resource write ignores `status`,
  a `/status` write ignores everything else;
- `metadata.resourceVersion` in a patch/replace body and delete preconditions (uid, resourceVersion):
  409 Conflict when stale; 404 NotFound; 409 AlreadyExists;
- finalizers: delete sets `deletionTimestamp`, the object goes once its finalizers are empty; no new
  finalizer may be added while deleting (422);
- list with label/field selectors and pages (`limit`, `continue`) served from one snapshot;
- watch from a resourceVersion (history replay, then live), BOOKMARKs every minute and on request,
  410 Expired for
  a resourceVersion older than `compact()`, `timeoutSeconds`, the client's idle timeout;
- failures injected per call: before or after the write is applied (`fail_next`), or from a hook.

Not modelled: server-side apply, strategic merge list keys (a strategic patch merges like RFC 7386),
admission, owner-reference garbage collection, namespace lifecycle.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jsonpatch

from dbaasctl.kube.api import Params, PatchType
from dbaasctl.kube.resources import (
    CONFIGMAPS,
    CORE_EVENTS,
    EVENTS,
    LEASES,
    NAMESPACES,
    SECRETS,
    JsonDict,
    ResourceRef,
)
from dbaasctl.primitives.clock import rfc3339
from support.apierrors import conflict, connection_reset, gone, server_error, status_error
from support.fakestore import FakeStore
from support.fakewatch import FakeWatch
from support.selectors import Matcher, field_matcher, label_matcher, merge_patch

__all__ = [
    "Call",
    "FakeKube",
    "FakeWatch",
    "conflict",
    "connection_reset",
    "gone",
    "server_error",
    "status_error",
]

VERBS = ("get", "list", "create", "replace", "patch", "delete", "watch")
WELL_KNOWN = (CONFIGMAPS, SECRETS, NAMESPACES, CORE_EVENTS, EVENTS, LEASES)


@dataclass(frozen=True)
class Call:
    """One request as the fake parsed it; what hooks and `calls` see."""

    verb: str
    path: str
    resource: ResourceRef
    namespace: str | None
    name: str | None
    subresource: str | None
    body: Any = None
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    verb: str
    resource: ResourceRef | None
    subresource: str | None
    error: BaseException
    after: bool
    times: int

    def matches(self, call: Call) -> bool:
        return (
            self.verb == call.verb
            and (self.resource is None or self.resource == call.resource)
            and (self.subresource is None or self.subresource == call.subresource)
        )


Hook = Callable[[Call], Awaitable[None]]
_Key = tuple[ResourceRef, str | None, str]


class FakeKube(FakeStore):
    """In-memory API server; implements `dbaasctl.kube.api.KubeApi`. Create it inside the running loop."""

    def __init__(
        self,
        resources: Iterable[ResourceRef] = (),
        *,
        status_subresources: Iterable[ResourceRef] = (),
        bookmark_interval: float | None = 60.0,
    ) -> None:
        """`bookmark_interval`: watches that allow bookmarks get one this often (kube-apiserver: ~1 min)."""
        super().__init__((*WELL_KNOWN, *resources), status_subresources)
        self.bookmark_interval = bookmark_interval
        self._snapshots: dict[str, tuple[int, list[JsonDict]]] = {}
        self._tokens = itertools.count(1)
        self._faults: list[_Fault] = []
        self.hook: Hook | None = None
        #: Called after a write was applied, before the answer returns (a slow response path).
        self.after_hook: Hook | None = None
        self.calls: list[Call] = []
        self.closed = False

    # -- watches, driven by the test ------------------------------------------------------------------

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks."""
        for watch in list(self._watches):
            if watch.bookmarks:
                watch.push({"type": "BOOKMARK", "object": watch.bookmark_object(self._rv)})

    def end_watches(self, error: BaseException | None = None) -> None:
        """Close every open watch: normally (None), with an ERROR event (ApiError), or by raising `error`."""
        for watch in list(self._watches):
            watch.end(error)

    def silence_watches(self) -> None:
        """Open watches stop receiving anything (a dead connection behind a proxy); new ones are healthy."""
        for watch in list(self._watches):
            watch.silenced = True

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def fail_next(
        self,
        verb: str,
        resource: ResourceRef | None,
        error: BaseException,
        *,
        after: bool = False,
        times: int = 1,
        subresource: str | None = None,
    ) -> None:
        """The next `times` matching calls raise `error`: before the server acts, or (`after`) once the
        write is applied (a timeout or reset that hid a success)."""
        if verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}")
        self._faults.append(_Fault(verb, resource, subresource, error, after, times))

    # -- KubeApi -------------------------------------------------------------------------------------

    async def get(self, path: str, params: Params | None = None, *, timeout: float | None = None) -> JsonDict:
        call = await self._enter("get", path, params=params)
        return copy.deepcopy(self._existing(call))

    async def list(
        self, path: str, params: Params | None = None, *, timeout: float | None = None
    ) -> JsonDict:
        call = await self._enter("list", path, params=params)
        p = call.params
        token = p.get("continue")
        if token:
            if token not in self._snapshots:
                raise status_error(410, "Expired", "the provided continue parameter is too old")
            rv, items = self._snapshots.pop(token)
            if rv < self._compacted:
                raise status_error(410, "Expired", "the provided continue parameter is too old")
        else:
            match = self._matcher(p)
            rv = self._rv
            items = [copy.deepcopy(o) for o in self._select(call.resource, call.namespace, match)]
        limit = int(p.get("limit") or 0)
        meta: JsonDict = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            next_token = f"{rv}-{next(self._tokens)}"
            self._snapshots[next_token] = (rv, items[limit:])
            meta |= {"continue": next_token, "remainingItemCount": len(items) - limit}
            items = items[:limit]
        ref = call.resource
        return {"kind": f"{ref.kind}List", "apiVersion": ref.api_version, "metadata": meta, "items": items}

    async def create(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        call = await self._enter("create", path, body=body, params=params)
        if call.name is not None:
            raise status_error(405, "MethodNotAllowed", "create needs a collection path")
        result = self._create(call.resource, call.namespace, copy.deepcopy(dict(body)), keep_status=False)
        return await self._leave(call, result)

    async def replace(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        call = await self._enter("replace", path, body=body)
        old = self._existing(call)
        self._check_rv(call, old, body)
        return await self._leave(
            call, self._write(call.resource, call.subresource, old, copy.deepcopy(dict(body)))
        )

    async def patch(
        self,
        path: str,
        body: Any,
        patch_type: PatchType = "merge",
        *,
        field_manager: str | None = None,
        force: bool | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        call = await self._enter("patch", path, body=body)
        old = self._existing(call)
        if patch_type in ("merge", "strategic"):
            if not isinstance(body, dict):
                raise status_error(400, "BadRequest", "a merge patch must be a JSON object")
            self._check_rv(call, old, body)
            new = merge_patch(old, body)
        elif patch_type == "json":
            try:
                new = jsonpatch.apply_patch(old, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise status_error(422, "Invalid", f"the JSON patch could not be applied: {exc}") from None
        else:
            raise status_error(415, "UnsupportedMediaType", "server-side apply is not modelled")
        return await self._leave(call, self._write(call.resource, call.subresource, old, new))

    async def delete(
        self,
        path: str,
        *,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, str] | None = None,
        grace_period_seconds: int | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        call = await self._enter("delete", path)
        old = self._existing(call)
        meta = old["metadata"]
        for field_name in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field_name)
            if wanted is not None and wanted != meta.get(field_name):
                raise conflict(
                    f"Precondition failed: {field_name}: {wanted}, object has {meta.get(field_name)}"
                )
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return await self._leave(call, copy.deepcopy(old))
            new = copy.deepcopy(old)
            new["metadata"] |= {"deletionTimestamp": rfc3339(), "deletionGracePeriodSeconds": 0}
            return await self._leave(call, self._store(call.resource, new, "MODIFIED"))
        return await self._leave(call, self._remove(call.resource, old))

    def watch(
        self,
        path: str,
        params: Params | None = None,
        *,
        idle_timeout: float | None = 80.0,
        connect_timeout: float = 10.0,
    ) -> FakeWatch:
        return FakeWatch(self, path, _params(params), idle_timeout)

    async def close(self) -> None:
        self.closed = True
        self.end_watches()

    # -- request plumbing ----------------------------------------------------------------------------

    def _parse(self, verb: str, path: str, body: Any, params: Params | None) -> Call:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise status_error(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in self._resources:
            namespace, rest = rest[1], rest[2:]
        ref = self._resources.get((group, version, rest[0] if rest else ""))
        if ref is None or len(rest) > 3:
            raise status_error(404, "NotFound", f"the server could not find the requested resource ({path})")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (sub == "status" and ref in self._status):
            raise status_error(404, "NotFound", f"{ref.plural} has no subresource {sub!r}")
        return Call(verb, path, ref, namespace, name, sub, copy.deepcopy(body), _params(params))

    async def _enter(self, verb: str, path: str, *, body: Any = None, params: Params | None = None) -> Call:
        if self.closed:
            raise RuntimeError("FakeKube is closed")
        await asyncio.sleep(0)  # a request always yields to the loop, as a real one does
        call = self._parse(verb, path, body, params)
        self.calls.append(call)
        if self.hook is not None:
            await self.hook(call)
        fault = self._take_fault(call, after=False)
        if fault is not None:
            raise fault
        return call

    async def _leave(self, call: Call, result: JsonDict) -> JsonDict:
        if self.after_hook is not None:
            await self.after_hook(call)
        fault = self._take_fault(call, after=True)
        if fault is not None:
            raise fault
        return result

    def _take_fault(self, call: Call, *, after: bool) -> BaseException | None:
        for fault in self._faults:
            if fault.after == after and fault.matches(call):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault.error
        return None

    def _existing(self, call: Call) -> JsonDict:
        if call.name is None:
            raise status_error(405, "MethodNotAllowed", f"{call.verb} needs an object path")
        obj = self._objects.get((call.resource, call.namespace, call.name))
        if obj is None:
            raise status_error(
                404, "NotFound", f'{call.resource.plural} "{call.name}" not found', name=call.name
            )
        return obj

    @staticmethod
    def _check_rv(call: Call, old: JsonDict, body: Mapping[str, Any]) -> None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(
                f'Operation cannot be fulfilled on {call.resource.plural} "{call.name}": the object has '
                "been modified; please apply your changes to the latest version and try again"
            )

    def _matcher(self, params: Mapping[str, str]) -> Matcher:
        labels = label_matcher(params.get("labelSelector"))
        fields = field_matcher(params.get("fieldSelector"))
        return lambda obj: labels(obj) and fields(obj)


def _params(params: Params | None) -> dict[str, str]:
    if params is None:
        return {}
    items = params.items() if isinstance(params, Mapping) else params
    out: dict[str, str] = {}
    for key, value in items:
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
