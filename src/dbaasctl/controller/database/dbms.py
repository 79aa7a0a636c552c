"""Calling a procedure: the one place the reconciler reaches a DBMS, its messages and its backoff.

A DBMS's own error text may echo what the procedure was given or issued (`Key (v)=(<value>)`, a SIGNAL
message carrying a password), so it is logged only after every param value and every credential of the
Database is masked, and conditions and Events get facts only (operation, procedure, endpoint, reason).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dbaasctl.controller import reasons
from dbaasctl.controller.admission import AdmissionError, Plan
from dbaasctl.controller.database.metrics import DatabaseMetrics, Op
from dbaasctl.dbms.drivers import DbmsError
from dbaasctl.dbms.drivers import Reason as DbmsReason
from dbaasctl.dbms.endpoints import EndpointRegistry
from dbaasctl.redaction import redact

__all__ = ["DBMS_BACKOFF_BASE", "DBMS_BACKOFF_MAX", "CallFailed", "backoff", "call", "definite"]

log = logging.getLogger("dbaasctl.controller.database")

#: Retry delays after a failed procedure call: seconds, doubling, so a failing DBMS is not hammered.
DBMS_BACKOFF_BASE = 2.0
DBMS_BACKOFF_MAX = 300.0

_WHAT = {
    DbmsReason.CONNECTION_FAILED: "the endpoint cannot be reached",
    DbmsReason.OPERATION_TIMEOUT: "the call timed out",
    DbmsReason.UNKNOWN_ENDPOINT: "the endpoint is not open",
    DbmsReason.PROCEDURE_NOT_FOUND: "the procedure does not exist",
    DbmsReason.WRONG_PARAMETERS: "the procedure does not take the inputs the class passes",
    DbmsReason.BAD_RESULT_SHAPE: "the procedure did not return one key/value row set",
    DbmsReason.DUPLICATE_KEY: "the procedure returned a key twice",
    DbmsReason.INVALID_CLASS: "the class's procedure name or inputs break the contract",
    DbmsReason.PROCEDURE_FAILED: "the procedure raised an error",
    DbmsReason.AUTHENTICATION_FAILED: "the server refused the endpoint's login",
    DbmsReason.SCHEMA_NOT_FOUND: "a schema the procedure names does not exist",
    DbmsReason.DRIVER_UNAVAILABLE: "the endpoint's client driver cannot be loaded",
    DbmsReason.TLS_REFUSED: "the link is weaker than the endpoint's TLS policy; nothing was sent",
    DbmsReason.ENDPOINT_DOWN: "the endpoint is down (circuit open); no call was made",
}
#: The DBMS answered with an error before anything could have been committed: the call had no effect.
#: Any other failure (a timeout, a broken connection, a result we could not read) may have had one.
_DEFINITE = frozenset(
    {
        DbmsReason.PROCEDURE_FAILED,
        DbmsReason.PROCEDURE_NOT_FOUND,
        DbmsReason.WRONG_PARAMETERS,
        DbmsReason.INVALID_CLASS,
        DbmsReason.UNKNOWN_ENDPOINT,
    }
)


@dataclass(frozen=True)
class CallFailed:
    """A failed call as a value: the condition reason, a secret-free message, and whether it is known
    to have had no effect on the DBMS."""

    reason: str
    message: str
    no_effect: bool
    transient: bool = False  # the link or the deadline failed, not the procedure


def definite(exc: DbmsError) -> bool:
    return exc.reason in _DEFINITE


def backoff(failures: int) -> float:
    """The requeue delay after the n-th consecutive failed call (1-based), jittered by ±20%."""
    delay = min(DBMS_BACKOFF_MAX, DBMS_BACKOFF_BASE * 2.0 ** max(0, failures - 1))
    jitter: float = random.uniform(0.8, 1.2)
    return float(delay * jitter)


def _reason(op: Op, exc: DbmsError) -> str:
    if op == "rotate":
        return reasons.ROTATE_FAILED
    if op == "delete":
        return reasons.DELETE_FAILED
    if op == "retire":
        return reasons.RETIRE_FAILED
    if exc.transient or exc.reason is DbmsReason.UNKNOWN_ENDPOINT:
        return reasons.ENDPOINT_UNAVAILABLE
    if exc.reason is DbmsReason.INVALID_CLASS:
        return reasons.CLASS_INVALID
    return reasons.CREATE_FAILED


def _message(op: Op, procedure: str, endpoint: str, exc: DbmsError) -> str:
    sqlstate = f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else ""
    return (
        f"{op} procedure {procedure} on endpoint {endpoint} failed: "
        f"{_WHAT.get(exc.reason, 'the call failed')} ({exc.reason}{sqlstate}); details in the operator "
        "log; retrying with backoff"
    )


async def call(
    registry: EndpointRegistry,
    metrics: DatabaseMetrics,
    key: str,
    plan: Plan,
    op: Op,
    mask: Iterable[str],
    previous: Mapping[str, str] | None = None,
) -> dict[str, str] | CallFailed:
    """Run the operation's procedure; its result, or the failure as a value. `previous`: the data of
    the Secret a two-phase rotation supersedes, for rotate and retire inputs."""
    try:
        procedure, inputs = await plan.operation(op, previous)
    except AdmissionError as exc:  # no such procedure, or its inputs do not render
        return CallFailed(exc.reason, exc.message, no_effect=True)
    extra = {"database": key, "endpoint": plan.endpoint, "operation": op}
    log.debug("%s: calling %s procedure %s on endpoint %s", key, op, procedure, plan.endpoint, extra=extra)
    try:
        result = await registry.run(
            plan.endpoint, procedure, inputs, expect_rows=op not in ("delete", "retire"), operation=op
        )
    except DbmsError as exc:
        metrics.count(op, False)
        masked = redact(exc.message, [*plan.params.values(), *mask, *(previous or {}).values()])
        log.warning(
            "%s: %s procedure %s on endpoint %s failed: %s: %s",
            key,
            op,
            procedure,
            plan.endpoint,
            exc.reason,
            masked,
            extra=extra,
        )
        return CallFailed(
            _reason(op, exc), _message(op, procedure, plan.endpoint, exc), definite(exc), exc.transient
        )
    metrics.count(op, True)
    return result
