"""The reconciler's API writes, in two kinds.

*Fences* go before a side effect (finalizer, intent marker): they carry the resourceVersion we decided on,
so a concurrent edit turns them into a 409 and the pass decides again from the fresh object; nothing has
happened yet, so nothing is lost.

*Records* go after a side effect (the Secret, status bookkeeping): a concurrent edit of spec or metadata
must not make them fail, so status patches carry no resourceVersion (the operator is the only status
writer) and a Secret write is fenced by the Secret as last read from the API server (the pass's own read
for the first attempt, a new GET for every retry), not by the Database. Transient failures of any type
(an `ApiError` 409/429/5xx, a connection reset, a timeout) are retried in place, bounded and jittered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from random import uniform
from typing import Any, TypeVar

import aiohttp

from dbaasctl.api.database import DatabaseStatus
from dbaasctl.controller.secrets import build_secret, inspect_secret, secret_generation, write_patch
from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import SECRETS, JsonDict, ResourceRef

__all__ = [
    "DATABASES",
    "RECORD_ATTEMPTS",
    "SecretConflict",
    "ServerCopy",
    "Writer",
    "is_transient",
]

DATABASES = ResourceRef("dbaasctl.io", "v1", "databases", True, "Database")
#: Attempts per record write before the pass gives up (and keeps what it must write in memory).
RECORD_ATTEMPTS = 6
#: The longest wait between two attempts of a record write, in seconds.
RECORD_MAX_WAIT = 3.0

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class SecretConflict(Exception):
    """The Secret at the target name belongs to someone else; it is never overwritten."""


@dataclass(frozen=True)
class ServerCopy:
    """A Secret as this pass read it from the API server (`secret` None: the server said it is absent),
    with no write of ours to it since: a valid base for the first attempt of a record."""

    secret: JsonDict | None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying as is: the server or the link failed, not the request."""
    if isinstance(exc, ApiError):
        return exc.status in (409, 429) or exc.status >= 500
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


def status_body(status: DatabaseStatus, generation: int | None) -> JsonDict:
    """The whole status as a merge patch: fields we unset are sent as null, every condition carries
    the generation we acted on, as does observedGeneration."""
    status.observed_generation = generation
    for cond in status.conditions:
        cond.observed_generation = generation
    body: JsonDict = {name: None for name in _status_fields()}
    body.update(status.to_api())
    return body


def _status_fields() -> list[str]:
    return [f.alias or name for name, f in DatabaseStatus.model_fields.items()]


class Writer:
    def __init__(self, client: KubeApi, field_manager: str, sleep: Sleep, attempts: int = RECORD_ATTEMPTS):
        self.client = client
        self.field_manager = field_manager
        self.sleep = sleep
        self.attempts = attempts

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Full-jitter exponential backoff (0.2 s doubling, at most 3 s) between attempts. A plain loop:
        every record write runs through it, and a retry library's per-call state costs more CPU than
        the write's own encoding."""
        attempt = 1
        while True:
            try:
                return await fn()
            except Exception as exc:
                if attempt >= self.attempts or not is_transient(exc):
                    raise
            await self.sleep(uniform(0.0, min(RECORD_MAX_WAIT, 0.2 * 2 ** (attempt - 1))))
            attempt += 1

    # -- fences ------------------------------------------------------------------------------------
    async def patch_metadata(self, raw: JsonDict, metadata: Mapping[str, Any]) -> JsonDict:
        meta = raw["metadata"]
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion"), **metadata}}
        return await self.client.patch(
            DATABASES.path(meta["namespace"], meta["name"]), body, "merge", field_manager=self.field_manager
        )

    async def fence_status(self, raw: JsonDict, status: DatabaseStatus) -> JsonDict:
        """The intent marker: written only if the Database is still the one we decided on."""
        meta = raw["metadata"]
        body = {
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "status": status_body(status, meta.get("generation")),
        }
        return await self.client.patch(
            DATABASES.path(meta["namespace"], meta["name"], "status"),
            body,
            "merge",
            field_manager=self.field_manager,
        )

    async def get_database(self, namespace: str, name: str) -> JsonDict:
        return await self.client.get(DATABASES.path(namespace, name))

    # -- records -----------------------------------------------------------------------------------
    async def record_status(self, raw: JsonDict, status: DatabaseStatus) -> JsonDict:
        """Write the whole status without a precondition, retried; raises after the last attempt."""
        return await self.record_status_fields(raw, status_body(status, raw["metadata"].get("generation")))

    async def record_status_fields(self, raw: JsonDict, fields: JsonDict) -> JsonDict:
        """Write these status fields (null: unset) without a precondition, retried."""
        meta = raw["metadata"]
        body = {"status": fields}
        path = DATABASES.path(meta["namespace"], meta["name"], "status")
        return await self._retry(
            lambda: self.client.patch(path, body, "merge", field_manager=self.field_manager)
        )

    async def record_secret(
        self,
        db: JsonDict,
        name: str,
        data: Mapping[str, str],
        generation: int,
        *,
        read: ServerCopy | None = None,
    ) -> str:
        """Create or update our Secret with the credentials of `generation`: "created" or "updated".

        Every retry starts from a fresh GET of the Secret, so an attempt whose answer was lost (the write
        was applied) is recognised as done. The first attempt starts from `read` when the pass has one:
        nothing of ours was sent since, and the write is fenced by what was read (a create by the name,
        a patch by the resourceVersion), so a Secret created or edited in between turns it into a 409 and
        the retry starts from a GET like any other.
        """
        namespace = db["metadata"]["namespace"]
        first = read

        async def attempt() -> str:
            nonlocal first
            current: JsonDict | None = None
            if first is not None:
                current, first = first.secret, None
            else:
                try:
                    current = await self.client.get(SECRETS.path(namespace, name))
                except ApiError as exc:
                    if not exc.is_not_found:
                        raise
            if current is None:
                await self.client.create(
                    SECRETS.path(namespace),
                    build_secret(db, name, data, generation),
                    field_manager=self.field_manager,
                )
                return "created"
            state = inspect_secret(current, db)
            if not state.owned:
                raise SecretConflict(name)
            if secret_generation(current) == generation and not state.drifted:
                return "updated"  # an earlier attempt was applied; its answer was lost
            await self.client.patch(
                SECRETS.path(namespace, name),
                write_patch(current, db, data, generation),
                "merge",
                field_manager=self.field_manager,
            )
            return "updated"

        return await self._retry(attempt)

    async def secret_patch(self, namespace: str, name: str, patch: JsonDict) -> None:
        await self._retry(
            lambda: self.client.patch(
                SECRETS.path(namespace, name), patch, "merge", field_manager=self.field_manager
            )
        )

    async def delete_secret(self, namespace: str, name: str, uid: str | None) -> None:
        async def attempt() -> None:
            try:
                await self.client.delete(
                    SECRETS.path(namespace, name), preconditions={"uid": uid} if uid else None
                )
            except ApiError as exc:
                if not exc.is_not_found:
                    raise

        await self._retry(attempt)

    async def read_secret(self, namespace: str, name: str) -> JsonDict | None:
        async def attempt() -> JsonDict | None:
            try:
                return await self.client.get(SECRETS.path(namespace, name))
            except ApiError as exc:
                if exc.is_not_found:
                    return None
                raise

        return await self._retry(attempt)
