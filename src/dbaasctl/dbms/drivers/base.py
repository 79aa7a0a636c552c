"""The driver contract: one way to call a DBA's procedure, whatever the DBMS, and typed errors.

Everything that is the same for every DBMS lives here, so the per-DBMS modules only translate: name
the typed errors and their redacted messages, the result and catalogue shapes, and the lazily opened
pool. Names, inputs and result rows are marshalled in dbaasctl.dbms.drivers.marshal.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

from dbaasctl.redaction import mask, redact

MAX_MESSAGE = 2000


class Reason(StrEnum):
    """Stable, machine-readable causes; they become condition reasons and metric labels."""

    PROCEDURE_FAILED = "ProcedureFailed"  # the procedure raised (the DBMS's own message is kept)
    PROCEDURE_NOT_FOUND = "ProcedureNotFound"
    WRONG_PARAMETERS = "WrongParameters"  # the procedure exists but not with these parameters
    BAD_RESULT_SHAPE = "BadResultShape"  # no (or more than one) key/value row set, NULL or empty key
    DUPLICATE_KEY = "DuplicateKey"
    OPERATION_TIMEOUT = "OperationTimeout"
    CONNECTION_FAILED = "ConnectionFailed"
    INVALID_CLASS = "InvalidClass"  # caught before any DBMS call: the DatabaseClass must change
    UNKNOWN_ENDPOINT = "UnknownEndpoint"
    AUTHENTICATION_FAILED = "AuthenticationFailed"  # the server refused the endpoint's login
    SCHEMA_NOT_FOUND = "SchemaNotFound"  # the schema the procedure (or its body) names does not exist
    DRIVER_UNAVAILABLE = "DriverUnavailable"  # the client library (ODBC driver) cannot be loaded
    TLS_REFUSED = "TlsRefused"  # the link is weaker than the endpoint's TLS policy; nothing was sent
    ENDPOINT_DOWN = "EndpointDown"  # the keepalive says the endpoint is down; failed fast, no call


#: Reasons worth retrying without any change to the class or the procedure.
TRANSIENT_REASONS = frozenset(
    {
        Reason.OPERATION_TIMEOUT,
        Reason.CONNECTION_FAILED,
        Reason.AUTHENTICATION_FAILED,
        Reason.DRIVER_UNAVAILABLE,
        Reason.TLS_REFUSED,
        Reason.ENDPOINT_DOWN,
    }
)
#: Reasons that say the endpoint (not the procedure) is unusable: they mark it down.
ENDPOINT_REASONS = frozenset(
    {Reason.CONNECTION_FAILED, Reason.AUTHENTICATION_FAILED, Reason.DRIVER_UNAVAILABLE, Reason.TLS_REFUSED}
)


class DbmsError(Exception):
    """Base of every error this package raises; the message is already redacted and bounded."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        procedure: str | None = None,
        sqlstate: str | None = None,
    ) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "…"
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.procedure = procedure
        self.sqlstate = sqlstate

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ProcedureError(DbmsError):
    """The DBMS, the connection or the procedure's result failed the call."""


class ContractError(DbmsError):
    """The DatabaseClass asks for something the contract forbids; no SQL was sent."""

    def __init__(self, message: str, *, procedure: str | None = None) -> None:
        super().__init__(Reason.INVALID_CLASS, message, procedure=procedure)


@dataclass(frozen=True)
class ResultSet:
    columns: tuple[str, ...]
    rows: list[Sequence[object]] = field(default_factory=list)


@dataclass(frozen=True)
class ParameterInfo:
    name: str  # "" when the DBMS does not name it
    mode: str  # IN, OUT, INOUT, TABLE (PostgreSQL RETURNS TABLE columns)
    has_default: bool = False


@dataclass(frozen=True)
class RoutineInfo:
    """One routine found by catalog introspection (`dbaasctl check`)."""

    schema: str
    name: str
    kind: str  # "function" | "procedure"
    parameters: tuple[ParameterInfo, ...]

    @property
    def inputs(self) -> tuple[ParameterInfo, ...]:
        return tuple(p for p in self.parameters if p.mode in ("IN", "INOUT"))

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters if p.mode in ("OUT", "INOUT", "TABLE"))


@dataclass(frozen=True)
class PoolStats:
    size: int  # open connections
    idle: int


@runtime_checkable
class Driver(Protocol):
    """What the endpoint registry needs from a DBMS: call, ping, introspect, close."""

    kind: str
    #: How the class passes inputs: "named" (keys are parameter names) or "positional" ("0".."n-1").
    binding: str

    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        """Run one operation; key/value rows when `expect_rows`, else {} after draining every result."""
        ...

    async def ping(self, timeout: float) -> None:
        """Round trip to the server; raises ProcedureError(ConnectionFailed | OperationTimeout)."""
        ...

    async def describe(self, procedure: str, *, timeout: float) -> list[RoutineInfo]:
        """Catalog entries matching `procedure` (several for PostgreSQL overloads; [] when absent)."""
        ...

    def stats(self) -> PoolStats: ...

    async def close(self) -> None: ...


# ---- pools and errors ------------------------------------------------------------------------------

_P = TypeVar("_P")


class LazyPool(Generic[_P]):
    """A driver's connection pool, opened on first use and never reopened once closed.

    Opening lazily keeps an endpoint whose DBMS is down from blocking start-up; the lock keeps concurrent
    first calls from opening two pools; `closed` makes a call racing `close()` fail as a connection
    failure instead of opening a fresh pool behind the registry's back.
    """

    def __init__(self, open_pool: Callable[[], Awaitable[_P]]) -> None:
        self._open = open_pool
        self._lock = asyncio.Lock()
        self.current: _P | None = None
        self.closed = False

    async def get(self) -> _P:
        if self.closed:
            raise ProcedureError(Reason.CONNECTION_FAILED, "driver is closed")
        pool = self.current
        if pool is None:
            async with self._lock:
                pool = self.current
                if pool is None:
                    pool = self.current = await self._open()
        return pool

    def detach(self) -> _P | None:
        """Mark closed and hand over the pool (None if never opened) for the driver to close its way."""
        self.closed = True
        pool, self.current = self.current, None
        return pool


def free_size_stats(pool: Any) -> PoolStats:
    """aiomysql and aioodbc pools (same aio-libs design) count connections in `size` and `freesize`."""
    if pool is None:
        return PoolStats(size=0, idle=0)
    return PoolStats(size=int(pool.size), idle=int(pool.freesize))


def procedure_error(
    reason: Reason,
    text: str,
    *,
    procedure: str | None,
    secrets: Iterable[str],
    sqlstate: str | None = None,
) -> ProcedureError:
    """Every DBMS message becomes an error here: credentials masked first, then named by procedure."""
    text = redact(text, secrets)
    where = f"{procedure}: " if procedure else ""
    return ProcedureError(reason, where + text, procedure=procedure, sqlstate=sqlstate)


def with_values_masked(error: DbmsError, values: Iterable[str]) -> DbmsError:
    """The same error with the call's own bound values masked in its message.

    A DBMS echoes what it was given: `DETAIL: Key (v)=(<value>) already exists`, a MariaDB
    SIGNAL text built from an argument. Inputs are rendered from params and may carry what a
    user considers private, so they never reach an exception, a log line or a condition.
    """
    masked = mask(error.message, values)
    if masked == error.message:
        return error
    clone = type(error).__new__(type(error))
    clone.__dict__.update(vars(error))
    clone.message = masked
    clone.args = (masked,)
    return clone


_Call = TypeVar("_Call", bound=Callable[..., Awaitable[dict[str, str]]])


def masks_inputs(call: _Call) -> _Call:
    """Decorates a driver's `call`: any DbmsError it raises has the call's inputs masked."""

    @functools.wraps(call)
    async def wrapper(self: Any, procedure: str, inputs: Mapping[str, str], **kwargs: Any) -> dict[str, str]:
        try:
            return await call(self, procedure, inputs, **kwargs)
        except DbmsError as exc:
            masked = with_values_masked(exc, inputs.values())
            if masked is exc:
                raise
        raise masked from None

    return cast("_Call", wrapper)


def deadline_error(procedure: str | None, timeout: float, *, expired: bool, aftermath: str) -> ProcedureError:
    """A TimeoutError inside a call: the call's own deadline (`expired`: the statement ran too long, and
    `aftermath` says what became of it) or else the pool's connect timeout (no connection at all)."""
    if expired:
        return ProcedureError(
            Reason.OPERATION_TIMEOUT,
            f"{procedure or 'statement'} did not finish within {timeout:g}s; the statement was {aftermath}",
            procedure=procedure,
        )
    return ProcedureError(Reason.CONNECTION_FAILED, "connection attempt timed out", procedure=procedure)
