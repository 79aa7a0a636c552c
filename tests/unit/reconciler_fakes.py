"""Fault injection around `FakeKube`, and an in-memory DBMS, for the Database reconciler's unit tests.

`FaultyApi` sits between the reconciler and `support.fakekube.FakeKube` (which keeps the API server's
rules: resourceVersion preconditions, AlreadyExists, the status subresource, generations, finalizers) and
injects one failure kind into the n-th request of a given kind, before or after the write is applied,
so a test can say "the Secret create reached etcd but the answer was lost".

`MemoryDbms` is a driver for the real `EndpointRegistry`: it keeps one password per database, records
every call, and can fail a call before or after its effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbaasctl.dbms.drivers import PoolStats, ProcedureError, Reason, RoutineInfo
from dbaasctl.kube.api import PatchType
from dbaasctl.kube.errors import ApiError
from support.fakekube import FakeKube, connection_reset, server_error

JsonDict = dict[str, Any]


class Crash(BaseException):
    """The operator process died here: nothing after this point runs, memory is lost."""


#: Failure kinds injected at a request or call.
CONFLICT = "conflict"  # a user edits the object right before the request (a stale precondition fails)
SERVER_ERROR = "5xx"  # the request is refused, nothing applied
TIMEOUT_APPLIED = "timeout-applied"  # the write is applied, the answer is lost (client timeout)
RESET = "reset"  # the connection is reset before the request reaches the server
CRASH = "crash"  # the write is applied, then the process dies
KINDS = (CONFLICT, SERVER_ERROR, TIMEOUT_APPLIED, RESET, CRASH)
#: Outside the fault matrix: RBAC refuses the request (the operator's role lacks a verb), nothing applied.
FORBIDDEN = "403"


def label_of(verb: str, path: str, body: Any) -> str:
    """A stable name of a request for the fault matrix, e.g. `patch databases/status`."""
    parts = path.strip("/").split("/")
    kind = "databases" if "databases" in parts else "secrets" if "secrets" in parts else parts[-1]
    sub = "/status" if parts[-1] == "status" else ""
    what = ""
    if verb == "patch" and kind == "databases" and not sub:
        meta = (body or {}).get("metadata") or {}
        what = " finalizers" if "finalizers" in meta else " annotations" if "annotations" in meta else ""
    return f"{verb} {kind}{sub}{what}"


@dataclass
class Fault:
    """Inject `kind` into the `nth` request (1-based) with this label; fires once."""

    label: str
    kind: str
    nth: int = 1
    seen: int = 0
    fired: bool = False


class FaultyApi:
    """`KubeApi` in front of a `FakeKube`: records every request by label and injects `faults`."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.requests: list[str] = []
        self.faults: list[Fault] = []

    def _take(self, label: str) -> str | None:
        for fault in self.faults:
            if fault.fired or fault.label != label:
                continue
            fault.seen += 1
            if fault.seen == fault.nth:
                fault.fired = True
                return fault.kind
        return None

    async def _concurrent_edit(self, path: str) -> None:
        """Someone else (a user, a GitOps tool) writes the object right before our request."""
        target = path.removesuffix("/status")
        if "/secrets" in target and target.rstrip("/").endswith("/secrets"):
            return  # a collection: nothing to edit
        with contextlib.suppress(ApiError):
            current = await self.kube.get(target)
            edited = int(((current["metadata"].get("labels") or {}).get("edited")) or 0) + 1
            await self.kube.patch(target, {"metadata": {"labels": {"edited": str(edited)}}})

    async def _do(self, verb: str, path: str, body: Any, send: Callable[[], Awaitable[JsonDict]]) -> JsonDict:
        label = label_of(verb, path, body)
        self.requests.append(label)
        kind = self._take(label)
        if kind == CONFLICT:
            await self._concurrent_edit(path)
        elif kind == SERVER_ERROR:
            raise server_error()
        elif kind == RESET:
            raise connection_reset()
        elif kind == FORBIDDEN:
            raise ApiError(
                403, "Forbidden", f"{label} is forbidden: cannot {verb} this resource", method=verb
            )
        result = await send()
        if kind == TIMEOUT_APPLIED:
            raise TimeoutError
        if kind == CRASH:
            raise Crash(f"crash after {label}")
        return result

    async def get(self, path: str, params: Any = None, *, timeout: float | None = None) -> JsonDict:
        return await self._do("get", path, None, lambda: self.kube.get(path, params))

    async def list(self, path: str, params: Any = None, *, timeout: float | None = None) -> JsonDict:
        return await self.kube.list(path, params)

    async def create(self, path: str, body: Mapping[str, Any], **kw: Any) -> JsonDict:
        return await self._do("create", path, body, lambda: self.kube.create(path, body, **kw))

    async def replace(self, path: str, body: Mapping[str, Any], **kw: Any) -> JsonDict:
        return await self._do("replace", path, body, lambda: self.kube.replace(path, body, **kw))

    async def patch(self, path: str, body: Any, patch_type: PatchType = "merge", **kw: Any) -> JsonDict:
        return await self._do("patch", path, body, lambda: self.kube.patch(path, body, patch_type, **kw))

    async def delete(self, path: str, **kw: Any) -> JsonDict:
        return await self._do("delete", path, None, lambda: self.kube.delete(path, **kw))

    def watch(self, path: str, params: Any = None, **kw: Any) -> Any:
        return self.kube.watch(path, params, **kw)

    async def close(self) -> None:
        await self.kube.close()


@dataclass
class Call:
    operation: str
    name: str
    applied: bool


#: Failure kinds at a DBMS call, named like the API ones: CONFLICT = a user edits the Database while the
#: call runs; SERVER_ERROR = the procedure raised (nothing applied); TIMEOUT_APPLIED = applied, the answer
#: lost; RESET = the connection broke before the call reached the server; CRASH = applied, the process dies.


@dataclass
class MemoryDbms:
    """Databases keyed by the `k8sName` input; passwords change on rotate."""

    passwords: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    #: Create called for a database that exists: a repeated side effect (answered like the samples do,
    #: with fresh credentials).
    repeats: int = 0
    #: (operation, kind): fail the next call of that operation with that kind.
    faults: list[tuple[str, str]] = field(default_factory=list)
    #: Runs inside every call, while it is in flight (e.g. a user editing the Database).
    during_call: Callable[[str], Awaitable[None]] | None = None
    #: Logins the DBMS accepts: username → password (cut-over: one per database; A/B: up to two).
    logins: dict[str, str] = field(default_factory=dict)
    #: The login role each database's latest credentials use.
    current_user: dict[str, str] = field(default_factory=dict)
    #: A retire that would have ended the credentials in use: a broken two-phase rotation.
    bad_retires: int = 0

    def driver(self, kind: str, dsn: Any, **_: Any) -> MemoryDriver:
        return MemoryDriver(self, kind)

    def count(self, operation: str) -> int:
        return sum(1 for c in self.calls if c.operation == operation and c.applied)

    async def run(self, operation: str, inputs: Mapping[str, str]) -> dict[str, str]:
        name = inputs.get("k8sName", "")
        fault = next((f for f in self.faults if f[0] == operation), None)
        if fault is not None:
            self.faults.remove(fault)
        kind = fault[1] if fault is not None else None
        if self.during_call is not None:
            await self.during_call(operation)
        if kind == CONFLICT and self.edit is not None:
            await self.edit()
        if kind == SERVER_ERROR:
            self.calls.append(Call(operation, name, False))
            raise ProcedureError(Reason.PROCEDURE_FAILED, "injected failure", procedure=operation)
        if kind == RESET:
            self.calls.append(Call(operation, name, False))
            raise ProcedureError(Reason.CONNECTION_FAILED, "connection reset by peer", procedure=operation)
        out: dict[str, str] = {}
        if operation == "create":
            self.repeats += name in self.passwords
            out = self._issue(name, name)
        elif operation == "rotate":
            if name not in self.passwords:
                self.calls.append(Call(operation, name, False))
                raise ProcedureError(Reason.PROCEDURE_FAILED, f"no database {name}")
            if "inUse" in inputs:  # A/B: the role not in use gets a new password, the other stays valid
                out = self._issue(name, _other(name, inputs["inUse"] or self.current_user[name]))
            else:
                self.logins.pop(self.current_user[name], None)
                out = self._issue(name, name)
        elif operation == "retire":
            current = self.current_user.get(name)
            # Without a name (the Secret was lost): every login of this database but the current one.
            users = [inputs["retiredUser"]] if inputs.get("retiredUser") else [
                u for u in self.logins if (u == name or u.startswith(f"{name}_")) and u != current
            ]  # fmt: skip
            for user in users:
                self.bad_retires += user == current
                self.logins.pop(user, None)
        elif operation == "delete":
            self.passwords.pop(name, None)
            for user in [u for u in self.logins if u == name or u.startswith(f"{name}_")]:
                del self.logins[user]
        self.calls.append(Call(operation, name, True))
        if kind == TIMEOUT_APPLIED:
            raise ProcedureError(Reason.OPERATION_TIMEOUT, f"{operation} did not finish", procedure=operation)
        if kind == CRASH:
            raise Crash(f"crash after the {operation} call")
        return out

    def _issue(self, name: str, user: str) -> dict[str, str]:
        self.passwords[name] = secrets.token_hex(8)
        self.logins[user] = self.passwords[name]
        self.current_user[name] = user
        return {"username": user, "password": self.passwords[name], "database": name}

    def accepts(self, username: str | None, password: str | None) -> bool:
        return username is not None and self.logins.get(username) == password

    #: Set by the harness: a user's edit of the Database (CONFLICT at a DBMS call).
    edit: Callable[[], Awaitable[None]] | None = None


def _other(name: str, user: str) -> str:
    """The A/B partner of a login role: orders → orders_b → orders_a → orders_b ..."""
    return f"{name}_a" if user == f"{name}_b" else f"{name}_b"


class MemoryDriver:
    binding = "named"

    def __init__(self, dbms: MemoryDbms, kind: str) -> None:
        self.dbms = dbms
        self.kind = kind

    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        await asyncio.sleep(0)
        operation = procedure.rpartition(".")[2]
        return await self.dbms.run(operation, inputs)

    async def ping(self, timeout: float) -> None:
        return None

    async def describe(self, procedure: str, *, timeout: float) -> list[RoutineInfo]:
        return []

    def stats(self) -> PoolStats:
        return PoolStats(size=0, idle=0)

    async def close(self) -> None:
        return None
