"""Generic ODBC through aioodbc/pyodbc: `{CALL proc(?, ...)}` with inputs by position ("0".."n-1").

unixODBC drivers block, so every call runs as ONE function in this driver's own thread pool: execute,
then every result set through `nextset()` (errors among result sets surface there). Doing it in one go
means a timeout can act on a known state: the statement is cancelled with SQLCancel from another thread
(the ODBC way), and the connection is discarded; if the driver does not return promptly, the connection
is detached from the pool and closed when its thread finally returns, never reused. A driver-side query
timeout slightly longer than ours is set as a backstop.

Identifier quoting follows the server behind the driver (SQL_DBMS_NAME): PostgreSQL's case folding and
double quotes, MySQL/MariaDB backticks, SQL Server brackets, otherwise the driver's quote character.

TLS: ODBC hides the socket, so the link's state is the server's view of the session, asked with one
statement (PostgreSQL `pg_stat_ssl`, MySQL/MariaDB `Ssl_cipher`) on every ping, and before a call when a
TLS minimum is set. Whether the driver verified the certificate is not knowable: at best `encrypted`.
Other servers stay `unknown`, which meets only a `plaintext` minimum.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aioodbc
import pyodbc

from dbaasctl.dbms.drivers.base import (
    ENDPOINT_REASONS,
    LazyPool,
    ParameterInfo,
    PoolStats,
    ProcedureError,
    Reason,
    ResultSet,
    RoutineInfo,
    deadline_error,
    free_size_stats,
    masks_inputs,
)
from dbaasctl.dbms.drivers.marshal import (
    positional_values,
    rows_to_mapping,
    split_procedure,
)
from dbaasctl.dbms.drivers.odbc_blocking import (
    TLS_PROBES,
    probe_and_execute,
    procedure_columns,
    quiet_close,
    use_utf8,
)
from dbaasctl.dbms.drivers.odbc_errors import odbc_error
from dbaasctl.dbms.tls import TlsState

MAX_IDENTIFIER = 128
_SQL_PARAM_INPUT, _SQL_PARAM_INPUT_OUTPUT, _SQL_RESULT_COL, _SQL_PARAM_OUTPUT, _SQL_RETURN_VALUE = (
    1,
    2,
    3,
    4,
    5,
)


def odbc_value(value: str) -> str:
    """Brace-quote a connection-string value (ODBC: `}` doubled inside braces)."""
    return "{" + value.replace("}", "}}") + "}"


class Dialect:
    """How the server behind an ODBC driver spells identifiers and parameters."""

    def __init__(self, dbms_name: str, quote_char: str) -> None:
        name = dbms_name.lower()
        self.name = dbms_name
        if "postgres" in name:
            self.style = "postgres"
        elif "mysql" in name or "mariadb" in name:
            self.style = "mysql"
        elif "sql server" in name:
            self.style = "sqlserver"
        else:
            self.style = "generic"
        self.quote_char = quote_char.strip() or '"'

    def quote(self, name: str) -> str:
        if self.style == "postgres":
            return '"' + name.lower() + '"'
        if self.style == "mysql":
            return "`" + name + "`"
        if self.style == "sqlserver":
            return "[" + name.replace("]", "]]") + "]"
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def target(self, schema: str | None, bare: str) -> str:
        return (self.quote(schema) + "." if schema else "") + self.quote(bare)


class OdbcDriver:
    kind = "odbc"
    binding = "positional"

    def __init__(
        self,
        connection_string: str,
        *,
        secrets: Iterable[str] = (),
        max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._connection_string = connection_string
        self._secrets = tuple(s for s in secrets if s)
        self._max = max(1, max_connections)
        self._connect_timeout = connect_timeout
        # Calls + cancels + connects can all block at once; never share the loop's default executor.
        self._executor = ThreadPoolExecutor(max_workers=self._max * 2 + 2, thread_name_prefix="dbaasctl-odbc")
        self._pool: LazyPool[aioodbc.Pool] = LazyPool(self._open_pool)
        self._dialect: Dialect | None = None
        self._detached = 0
        self.tls_minimum = TlsState.PLAINTEXT
        self._tls = TlsState.UNKNOWN

    def tls_state(self) -> TlsState:
        """The server's view of the last probed session (see the module docstring)."""
        return self._tls

    # ---- pool -------------------------------------------------------------------------------------
    async def _open_pool(self) -> aioodbc.Pool:
        return await aioodbc.create_pool(
            dsn=self._connection_string,
            minsize=0,
            maxsize=self._max,
            autocommit=True,
            timeout=math.ceil(self._connect_timeout),
            executor=self._executor,
            pool_recycle=300,
            after_created=self._after_created,
        )

    def stats(self) -> PoolStats:
        return free_size_stats(self._pool.current)

    async def close(self) -> None:
        pool = self._pool.detach()
        if pool is not None:
            pool.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.wait_closed(), timeout=10)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def _after_created(self, raw: Any) -> None:
        """MariaDB Connector/ODBC corrupts long UTF-16 parameters (SQLPutData); send UTF-8 instead."""
        dialect = await self._get_dialect(raw)
        if dialect.style == "mysql":
            await self._in_thread(use_utf8, raw)

    async def _get_dialect(self, raw: Any) -> Dialect:
        if self._dialect is None:
            name, quote = await self._in_thread(
                lambda: (raw.getinfo(pyodbc.SQL_DBMS_NAME), raw.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR))
            )
            self._dialect = Dialect(str(name or ""), str(quote or '"'))
        return self._dialect

    # ---- statements -------------------------------------------------------------------------------
    def statement(self, dialect: Dialect, procedure: str, inputs: Mapping[str, str]) -> tuple[str, list[str]]:
        """`{CALL target(?, ...)}` and its positional values; subclasses change the calling convention."""
        schema, bare = split_procedure(procedure, max_length=MAX_IDENTIFIER)
        values = positional_values(inputs, procedure=procedure)
        marks = ", ".join("?" for _ in values)
        return "{CALL " + dialect.target(schema, bare) + "(" + marks + ")}", values

    @masks_inputs
    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        # Validate the class before touching the network: a bad name is a class error, not a DBMS one.
        split_procedure(procedure, max_length=MAX_IDENTIFIER)
        sets = await self._run(procedure, lambda d: self.statement(d, procedure, inputs), timeout, call=True)
        return rows_to_mapping(sets, procedure=procedure) if expect_rows else {}

    async def _run(
        self,
        procedure: str | None,
        build: Callable[[Dialect], tuple[str, Sequence[object]]],
        timeout: float,
        *,
        call: bool = False,
    ) -> list[ResultSet]:
        deadline = asyncio.timeout(timeout)
        pool: aioodbc.Pool | None = None
        conn: Any = None
        keep = False
        try:
            async with deadline:
                pool = await self._pool.get()
                conn = await pool.acquire()
                raw = conn._conn  # aioodbc has no public accessor; we drive pyodbc in one thread call
                dialect = await self._get_dialect(raw)
                sql, values = build(dialect)
                probe = TLS_PROBES.get(dialect.style)
                if call and self.tls_minimum is TlsState.PLAINTEXT:
                    probe = None  # no policy to enforce: spare the round trip
                # pyodbc gives a cursor the connection's timeout when the cursor is made: set it first.
                with contextlib.suppress(pyodbc.Error):  # not every driver supports it (psqlODBC)
                    raw.timeout = math.ceil(timeout) + 2  # driver-side backstop; ours fires first
                cursor = await self._in_thread(raw.cursor)
                minimum = self.tls_minimum if call else TlsState.PLAINTEXT
                work = asyncio.ensure_future(
                    self._in_thread(probe_and_execute, cursor, probe, minimum, sql, list(values))
                )
                try:
                    outcome: tuple[TlsState, list[ResultSet] | None] = await asyncio.shield(work)
                except (TimeoutError, asyncio.CancelledError):
                    await self._abandon(conn, raw, cursor, work)
                    conn = None
                    raise
                keep = True
                state, sets = outcome
                if probe is not None or (call and self.tls_minimum is not TlsState.PLAINTEXT):
                    self._tls = state
                if sets is None:
                    raise ProcedureError(
                        Reason.TLS_REFUSED,
                        f"{procedure}: not called: the link is {state}, the endpoint's TLS policy requires "
                        f"{self.tls_minimum}",
                        procedure=procedure,
                    )
                return sets
        except TimeoutError:
            raise deadline_error(
                procedure, timeout, expired=deadline.expired(), aftermath="cancelled"
            ) from None
        except pyodbc.Error as exc:
            error = odbc_error(exc, procedure, secrets=self._secrets)
            keep = error.reason not in (Reason.CONNECTION_FAILED, Reason.OPERATION_TIMEOUT)
            if error.reason in ENDPOINT_REASONS and pool is not None:
                await pool.clear()
            raise error from None
        finally:
            if conn is not None and pool is not None:
                if not keep:
                    with contextlib.suppress(pyodbc.Error):
                        await conn.close()
                await pool.release(conn)

    async def _abandon(self, conn: Any, raw: Any, cursor: Any, work: asyncio.Future[Any]) -> None:
        """Cancel the running statement and make sure the connection is never reused."""
        with contextlib.suppress(TimeoutError, pyodbc.Error):
            await asyncio.wait_for(self._in_thread(cursor.cancel), timeout=5)
        with contextlib.suppress(BaseException):  # the call's own outcome no longer matters
            await asyncio.wait_for(asyncio.shield(work), timeout=5)
        conn._conn = None  # aioodbc now sees it closed: release() drops it
        if work.done():
            await self._in_thread(quiet_close, raw)
        else:
            self._detached += 1
            work.add_done_callback(lambda _: self._executor.submit(quiet_close, raw))
        pool = self._pool.current
        if pool is not None:
            await pool.release(conn)

    async def ping(self, timeout: float) -> None:
        await self._run(None, lambda _d: ("SELECT 1", []), timeout)

    async def describe(self, procedure: str, *, timeout: float) -> list[RoutineInfo]:
        """ODBC catalog functions (SQLProcedures / SQLProcedureColumns): names and directions."""
        schema, bare = split_procedure(procedure, max_length=MAX_IDENTIFIER)
        pool = await self._pool.get()
        async with asyncio.timeout(timeout):
            async with pool.acquire() as conn:
                raw = conn._conn
                rows = await self._in_thread(procedure_columns, raw, bare, schema)
        found: dict[tuple[str, str], list[ParameterInfo]] = {}
        for proc_schema, proc_name, column, column_type in rows:
            params = found.setdefault((proc_schema or "", proc_name), [])
            mode = {
                _SQL_PARAM_INPUT: "IN",
                _SQL_PARAM_INPUT_OUTPUT: "INOUT",
                _SQL_PARAM_OUTPUT: "OUT",
                _SQL_RESULT_COL: "TABLE",
            }.get(column_type)
            if column is not None and mode is not None:
                params.append(ParameterInfo(name=str(column or ""), mode=mode))
        return [
            RoutineInfo(schema=s, name=n.split(";")[0], kind="procedure", parameters=tuple(p))
            for (s, n), p in found.items()
        ]
