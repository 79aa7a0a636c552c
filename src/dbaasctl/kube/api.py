"""`KubeApi`: the API-server operations the kit and controllers use, as a protocol.

Everything above the HTTP client (informers, leader election, Events, the manager, reconcilers) takes a
`KubeApi`, so a test can hand it an in-memory API server instead of `kube.rest.KubeClient`. The surface
is deliberately the one callers use today and no wider: paths come from `ResourceRef.path`, bodies and
answers are JSON dicts, failures are `kube.errors.ApiError`s (plus connection errors and timeouts).

Preconditions travel the way the API server reads them: `metadata.resourceVersion` in a patch or
replace body (a stale one is a 409 Conflict), `preconditions` (uid, resourceVersion) on delete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from dbaasctl.kube.resources import JsonDict

ParamValue = str | int | float | bool
Params = Mapping[str, ParamValue | None] | Sequence[tuple[str, ParamValue]]
PatchType = Literal["merge", "json", "strategic", "apply"]


class WatchEvents(Protocol):
    """One watch request: `async with` it, then `async for` its `{"type", "object"}` events.

    Ends normally when the server closes the stream; raises `ApiError` for an ERROR event (410 Gone in
    particular) and `WatchIdleTimeout` when nothing, not even a bookmark, arrived within the idle timeout.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[JsonDict]: ...

    async def __anext__(self) -> JsonDict: ...


class KubeApi(Protocol):
    async def get(self, path: str, params: Params | None = None, *, timeout: float | None = None) -> JsonDict:
        """One object (or any GET answer) as a dict; 404 is an ApiError."""
        ...

    async def list(
        self, path: str, params: Params | None = None, *, timeout: float | None = None
    ) -> JsonDict:
        """One page of a collection: `items`, `metadata.resourceVersion`, `metadata.continue`.

        Params the kit sends: labelSelector, fieldSelector, limit, continue.
        """
        ...

    async def create(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """POST to a collection path; 409 AlreadyExists when the name is taken."""
        ...

    async def replace(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """PUT; `metadata.resourceVersion` in the body is a precondition (stale → 409)."""
        ...

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
        """PATCH an object or its `/status` subresource; the object as written comes back.

        A merge patch carrying `metadata.resourceVersion` is a precondition (stale → 409). On the main
        resource of a type with a status subresource, `status` in the patch is ignored; on `/status`,
        everything but status (and metadata preconditions) is ignored.
        """
        ...

    async def delete(
        self,
        path: str,
        *,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, str] | None = None,
        grace_period_seconds: int | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """DELETE; with finalizers the object only gets `deletionTimestamp` and is returned."""
        ...

    def watch(
        self,
        path: str,
        params: Params | None = None,
        *,
        idle_timeout: float | None = 80.0,
        connect_timeout: float = 10.0,
    ) -> WatchEvents:
        """A watch from `params["resourceVersion"]` (plus selectors, allowWatchBookmarks, timeoutSeconds)."""
        ...

    async def close(self) -> None:
        """Release connections; the owner (the manager) calls it once at the end."""
        ...
