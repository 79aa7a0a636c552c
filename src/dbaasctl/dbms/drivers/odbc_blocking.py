"""The blocking pyodbc work of the ODBC driver, each piece one function for one worker-thread call.

unixODBC drivers block, so the driver hands each of these to its own thread pool whole: the asyncio side
only schedules, cancels and abandons them (see `dbaasctl.dbms.drivers.odbc`). Nothing here touches the
event loop, which keeps what may run off-loop visibly separate from what may not.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pyodbc

from dbaasctl.dbms.drivers.base import ResultSet
from dbaasctl.dbms.tls import TlsState, satisfies

#: The server's view of the session's TLS, per dialect (see `dbaasctl.dbms.drivers.odbc`).
TLS_PROBES = {
    "postgres": "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
    "mysql": "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
    # needs VIEW SERVER STATE; without it the state stays unknown (not exercised against SQL Server here)
    "sqlserver": "SELECT encrypt_option FROM sys.dm_exec_connections WHERE session_id = @@SPID",
}
_NOT_ENCRYPTED = {"", "0", "f", "false", "none"}


def procedure_columns(raw: Any, bare: str, schema: str | None) -> list[tuple[str, str, str | None, int]]:
    cur = raw.cursor()
    try:
        names = [(r.procedure_schem, r.procedure_name) for r in cur.procedures(procedure=bare, schema=schema)]
        out: list[tuple[str, str, str | None, int]] = []
        for proc_schema, proc_name in names:
            columns = cur.procedureColumns(procedure=proc_name.split(";")[0], schema=proc_schema).fetchall()
            if not columns:
                out.append((proc_schema, proc_name, None, 0))
            for c in columns:
                out.append((proc_schema, proc_name, c.column_name, int(c.column_type)))
        return out
    finally:
        cur.close()


def probe_and_execute(
    cursor: Any, probe: str | None, minimum: TlsState, sql: str, values: list[object]
) -> tuple[TlsState, list[ResultSet] | None]:
    """Runs in a worker thread: the TLS probe, then the statement unless the link is below `minimum`."""
    state = TlsState.UNKNOWN
    if probe is not None:
        try:
            cursor.execute(probe)
            row = cursor.fetchone()
            while cursor.nextset():
                pass
        except pyodbc.ProgrammingError:  # e.g. no permission to read the view: the state stays unknown
            row = None
        if row is not None:
            encrypted = str(row[-1]).strip().lower() not in _NOT_ENCRYPTED
            state = TlsState.ENCRYPTED if encrypted else TlsState.PLAINTEXT
    if not satisfies(state, minimum):
        with contextlib.suppress(pyodbc.Error):
            cursor.close()
        return state, None
    return state, execute_all(cursor, sql, values)


def execute_all(cursor: Any, sql: str, values: list[object]) -> list[ResultSet]:
    """Runs in a worker thread: the statement and every result set it produces."""
    sets: list[ResultSet] = []
    try:
        cursor.execute(sql, values) if values else cursor.execute(sql)
        while True:
            if cursor.description:
                columns = tuple(str(d[0]) for d in cursor.description)
                rows = cursor.fetchall()
                sets.append(ResultSet(columns=columns, rows=[tuple(r) for r in rows]))
            if not cursor.nextset():
                break
    finally:
        with contextlib.suppress(pyodbc.Error):
            cursor.close()
    return sets


def quiet_close(raw: Any) -> None:
    with contextlib.suppress(pyodbc.Error):
        raw.close()


def use_utf8(raw: Any) -> None:
    raw.setencoding(encoding="utf-8")
    raw.setdecoding(pyodbc.SQL_CHAR, encoding="utf-8")
    raw.setdecoding(pyodbc.SQL_WCHAR, encoding="utf-8")
