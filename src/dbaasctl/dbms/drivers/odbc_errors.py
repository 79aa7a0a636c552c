"""SQL Server, MySQL/MariaDB and PostgreSQL errors as they reach us through ODBC, sorted into `Reason`s.

ODBC flattens every server's error into a SQLSTATE plus a message decorated by the driver manager
(`[vendor][driver]... (native) (SQLExecDirectW)`); the native error number hides in that decoration. Reading
it back is a job of its own, kept apart from the driver's connection and statement handling.
"""

from __future__ import annotations

import re

import pyodbc

from dbaasctl.dbms.drivers.base import ProcedureError, Reason, procedure_error

_PREFIX = re.compile(r"^(\s*\[[^\]]*\])+\s*")
_SUFFIX = re.compile(r"\s*\((?P<native>-?\d+)\)\s*\(SQL\w+\)\s*$|\s*\(SQL\w+\)\s*$")
_NATIVE = re.compile(r"\((-?\d+)\)\s*\(SQL\w+\)\s*$")
_NOT_FOUND_NATIVE = {1305, 2812}  # MySQL ER_SP_DOES_NOT_EXIST, SQL Server "Could not find stored procedure"
_WRONG_PARAMETERS_NATIVE = {1318, 201, 8144, 8145}
_TIMEOUT_NATIVE = {1969, 3024}  # MariaDB / MySQL max statement time
_AUTHENTICATION_NATIVE = {1045, 18456}  # MySQL access denied, SQL Server login failed
# Driver manager: driver not found / cannot be loaded / setup failed; "can't open lib" comes as 01000.
_DRIVER_STATES = {"IM002", "IM003", "IM004", "IM005", "IM006"}


def odbc_error(exc: pyodbc.Error, procedure: str | None, *, secrets: tuple[str, ...]) -> ProcedureError:
    """The `Reason` for a pyodbc error and its message without the driver manager's decoration, redacted."""
    sqlstate = str(exc.args[0]) if exc.args else ""
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    native_match = _NATIVE.search(message)
    native = int(native_match.group(1)) if native_match else None
    text = _SUFFIX.sub("", _PREFIX.sub("", message)).strip()
    if sqlstate in _DRIVER_STATES or (sqlstate == "01000" and "can't open lib" in text.lower()):
        reason = Reason.DRIVER_UNAVAILABLE
    elif sqlstate == "28000" or native in _AUTHENTICATION_NATIVE:
        reason = Reason.AUTHENTICATION_FAILED
    elif sqlstate.startswith("08"):
        reason = Reason.CONNECTION_FAILED
    elif sqlstate in ("HYT00", "HYT01", "HY008") or native in _TIMEOUT_NATIVE:
        reason = Reason.OPERATION_TIMEOUT
    elif native in _NOT_FOUND_NATIVE or (sqlstate == "42883" and "does not exist" in text):
        reason = Reason.PROCEDURE_NOT_FOUND
    elif native in _WRONG_PARAMETERS_NATIVE:
        reason = Reason.WRONG_PARAMETERS
    else:
        reason = Reason.PROCEDURE_FAILED
    return procedure_error(
        reason, f"[{sqlstate}] {text}", procedure=procedure, secrets=secrets, sqlstate=sqlstate
    )
