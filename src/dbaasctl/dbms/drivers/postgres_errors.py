"""asyncpg errors sorted into `Reason`s, with PostgreSQL's DETAIL and HINT kept in the message.

SQLSTATE classes decide the reason (connection, authentication, missing schema); the caller may already
know better (a missing routine vs. wrong parameters, found out from the catalog) and pass the reason in.
Everything ends in `procedure_error`, which redacts the endpoint's secrets.
"""

from __future__ import annotations

import asyncpg

from dbaasctl.dbms.drivers.base import ProcedureError, Reason, procedure_error

_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03", "53300", "3D000")
AUTHENTICATION_STATES = ("28000", "28P01")


def postgres_error(
    exc: BaseException, procedure: str | None, reason: Reason | None = None, *, secrets: tuple[str, ...]
) -> ProcedureError:
    """The `Reason` for an asyncpg (or socket) error, unless the caller passes one, and its redacted text."""
    sqlstate: str | None = None
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate
        parts = [str(exc.args[0]) if exc.args else exc.__class__.__name__]
        detail = getattr(exc, "detail", None)
        hint = getattr(exc, "hint", None)
        if detail:
            parts.append(f"DETAIL: {detail}")
        if hint:
            parts.append(f"HINT: {hint}")
        text = " ".join(parts)
        if reason is None:
            connection = sqlstate is not None and any(sqlstate.startswith(s) for s in _CONNECTION_STATES)
            reason = Reason.CONNECTION_FAILED if connection else Reason.PROCEDURE_FAILED
            if sqlstate in AUTHENTICATION_STATES:
                reason = Reason.AUTHENTICATION_FAILED
            elif sqlstate == "3F000":
                reason = Reason.SCHEMA_NOT_FOUND
    elif isinstance(exc, asyncpg.exceptions.DataError):  # pragma: no cover - subclass of InterfaceError
        text, reason = str(exc), reason or Reason.WRONG_PARAMETERS
    else:
        text = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        reason = reason or Reason.CONNECTION_FAILED
    return procedure_error(reason, text, procedure=procedure, secrets=secrets, sqlstate=sqlstate)
