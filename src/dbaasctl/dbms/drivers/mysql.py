"""MySQL / MariaDB through aiomysql: `CALL proc(%s, ...)` with inputs by position ("0".."n-1").

The values are escaped by the driver for the connection's character set and SQL mode (PyMySQL honours
NO_BACKSLASH_ESCAPES), never formatted by us. Every result set of the CALL is read, up to the final
status packet, so an error raised after the first SELECT surfaces instead of being lost; the one row set
with `key`/`value` columns is the result.

A timed-out or cancelled call leaves the connection mid-protocol: it is closed, never returned to the
pool, and the server-side thread is KILLed from a separate connection so the statement stops too. Thread
ids restart from 1 when the server restarts, so the KILL is sent only when the server's uptime shows it
has been running since before the statement was sent; otherwise the id may belong to someone else now
(and our statement died with the old server anyway).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import aiomysql
import pymysql

from dbaasctl.dbms.drivers.base import (
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
    procedure_error,
)
from dbaasctl.dbms.drivers.marshal import (
    positional_values,
    rows_to_mapping,
    split_procedure,
)
from dbaasctl.dbms.dsn import Dsn
from dbaasctl.dbms.tls import TlsState, from_ssl_object, satisfies

MAX_IDENTIFIER = 64
_NOT_FOUND = {1305}  # ER_SP_DOES_NOT_EXIST
_WRONG_PARAMETERS = {1318}  # ER_SP_WRONG_NO_OF_ARGS
# Access denied, unknown database, too many connections, shutdown, killed, and client-side 2xxx errors.
_CONNECTION = {1040, 1044, 1045, 1049, 1053, 1927, 4031}
_AUTHENTICATION = {1045}  # ER_ACCESS_DENIED_ERROR: wrong user or password


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def qualified(procedure: str) -> tuple[str | None, str, str]:
    schema, bare = split_procedure(procedure, max_length=MAX_IDENTIFIER)
    return schema, bare, (quote_ident(schema) + "." if schema else "") + quote_ident(bare)


def ssl_context(options: Mapping[str, str]) -> ssl.SSLContext | None:
    """MySQL client-style TLS options (`ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key`)."""
    opts = {k.lower().replace("_", "-"): v for k, v in options.items()}
    mode = (opts.get("ssl-mode") or opts.get("sslmode") or "").upper().replace("-", "_")
    ca = opts.get("ssl-ca")
    if mode in ("", "DISABLED", "DISABLE") and not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    if mode in ("REQUIRED", "REQUIRE", "PREFERRED", "PREFER") and not ca:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif mode in ("VERIFY_CA",):
        ctx.check_hostname = False
    if opts.get("ssl-cert"):
        ctx.load_cert_chain(opts["ssl-cert"], opts.get("ssl-key"))
    return ctx


class MySQLDriver:
    kind = "mysql"
    binding = "positional"

    def __init__(self, dsn: Dsn, *, max_connections: int = 10, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._secrets = dsn.secrets()
        self._max = max(1, max_connections)
        self._connect_timeout = connect_timeout
        self._pool: LazyPool[aiomysql.Pool] = LazyPool(self._open_pool)
        self._background: set[asyncio.Task[None]] = set()
        self.tls_minimum = TlsState.PLAINTEXT
        self._tls = TlsState.UNKNOWN

    def tls_state(self) -> TlsState:
        """TLS state of the connection used last (see dbaasctl.dbms.tls)."""
        return self._tls

    def _observe_tls(self, conn: aiomysql.Connection, procedure: str | None) -> None:
        """Record the link's real TLS state; refuse a procedure call over a link below the policy."""
        writer = getattr(conn, "_writer", None)
        self._tls = from_ssl_object(writer.get_extra_info("ssl_object") if writer is not None else None)
        if procedure is not None and not satisfies(self._tls, self.tls_minimum):
            raise ProcedureError(
                Reason.TLS_REFUSED,
                f"{procedure}: not called: the link is {self._tls}, the endpoint's TLS policy requires "
                f"{self.tls_minimum}",
                procedure=procedure,
            )

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "host": self._dsn.host or "localhost",
            "port": int(self._dsn.port or 3306),
            "user": self._dsn.user or "",
            "password": self._dsn.password or "",
            "db": self._dsn.database or None,
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": self._connect_timeout,
            "ssl": ssl_context(self._dsn.options),
            "program_name": "dbaasctl",
        }

    async def _open_pool(self) -> aiomysql.Pool:
        return await aiomysql.create_pool(
            minsize=0, maxsize=self._max, pool_recycle=300, **self._connect_kwargs()
        )

    def stats(self) -> PoolStats:
        return free_size_stats(self._pool.current)

    async def close(self) -> None:
        pool = self._pool.detach()
        if pool is not None:
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), timeout=10)
            except TimeoutError:
                pool.terminate()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ---- operations -------------------------------------------------------------------------------
    @masks_inputs
    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        _, _, target = qualified(procedure)
        values = positional_values(inputs, procedure=procedure)
        sql = f"CALL {target}({', '.join(['%s'] * len(values))})"
        sets = await self._run(procedure, sql, values, timeout, call=True)
        return rows_to_mapping(sets, procedure=procedure) if expect_rows else {}

    async def _run(
        self,
        procedure: str | None,
        sql: str,
        values: Sequence[str | None],
        timeout: float,
        *,
        call: bool = False,
    ) -> list[ResultSet]:
        deadline = asyncio.timeout(timeout)
        conn: aiomysql.Connection | None = None
        pool: aiomysql.Pool | None = None
        clean = False
        try:
            async with deadline:
                pool = await self._pool.get()
                conn = await pool.acquire()
                self._observe_tls(conn, procedure if call else None)
                sets = await _execute_all(conn, sql, values)
                clean = True
                return sets
        except TimeoutError:
            raise deadline_error(procedure, timeout, expired=deadline.expired(), aftermath="killed") from None
        except ProcedureError:
            clean = True  # refused before anything was sent
            raise
        except pymysql.MySQLError as exc:
            error = self._error(exc, procedure)
            clean = not _connection_level(exc)
            if error.reason is Reason.CONNECTION_FAILED and pool is not None:
                await pool.clear()
            raise error from None
        except OSError as exc:
            if pool is not None:
                await pool.clear()
            raise self._error(exc, procedure) from None
        finally:
            if conn is not None and pool is not None:
                if not clean:
                    self._discard(conn)
                pool.release(conn)

    def _discard(self, conn: aiomysql.Connection) -> None:
        """Close a connection left mid-statement and KILL its server thread from another session."""
        thread_id: int | None = None
        sent_at = 0.0
        try:
            thread_id = conn.thread_id()
            sent_at = float(conn.last_usage)  # loop time the statement was sent (at most)
        except (AttributeError, TypeError, IndexError):
            thread_id = None
        conn.close()
        if thread_id is not None and not self._pool.closed:
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._kill(thread_id, loop.time() - sent_at))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _kill(self, thread_id: int, running_for: float) -> None:
        """KILL the thread, unless the server restarted since the statement was sent (`running_for` s ago).

        Uptime is the difference of two whole-second clock readings, so it can overstate the time since
        boot by up to a second; one second of margin keeps the comparison erring towards not killing.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self._connect_timeout):
                conn = await aiomysql.connect(**self._connect_kwargs())
                try:
                    async with conn.cursor() as cur:
                        await cur.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
                        row = await cur.fetchone()
                        uptime = float(row[1]) if row else 0.0
                        if uptime - 1.0 < running_for + (loop.time() - started):
                            return  # restarted since: the id is not ours any more
                        await cur.execute("KILL %s", (thread_id,))
                finally:
                    conn.close()
        except (pymysql.MySQLError, OSError, TimeoutError):
            pass  # already gone (1094 unknown thread) or server unreachable: nothing left to stop

    def _error(self, exc: BaseException, procedure: str | None) -> ProcedureError:
        code: int | None = None
        if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int):
            code = exc.args[0]
            text = f"({code}) {exc.args[1] if len(exc.args) > 1 else ''}"
        else:
            text = f"{exc.__class__.__name__}: {exc}"
        if code in _NOT_FOUND:
            reason = Reason.PROCEDURE_NOT_FOUND
        elif code in _AUTHENTICATION:
            reason = Reason.AUTHENTICATION_FAILED
        elif code in _WRONG_PARAMETERS:
            reason = Reason.WRONG_PARAMETERS
        elif code is None or code in _CONNECTION or code >= 2000:
            reason = Reason.CONNECTION_FAILED
        else:
            reason = Reason.PROCEDURE_FAILED
        return procedure_error(reason, text, procedure=procedure, secrets=self._secrets)

    async def ping(self, timeout: float) -> None:
        await self._run(None, "SELECT 1", [], timeout)

    async def describe(self, procedure: str, *, timeout: float) -> list[RoutineInfo]:
        schema, bare, _ = qualified(procedure)
        routines = await self._run(
            procedure,
            "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
            "WHERE ROUTINE_NAME = %s AND ROUTINE_SCHEMA = COALESCE(%s, DATABASE())",
            [bare, schema],
            timeout,
        )
        out: list[RoutineInfo] = []
        for r_schema, r_name, r_type in routines[0].rows if routines else []:
            params = await self._run(
                procedure,
                "SELECT PARAMETER_MODE, PARAMETER_NAME FROM information_schema.PARAMETERS "
                "WHERE SPECIFIC_SCHEMA = %s AND SPECIFIC_NAME = %s AND ROUTINE_TYPE = %s "
                "AND ORDINAL_POSITION > 0 ORDER BY ORDINAL_POSITION",
                [str(r_schema), str(r_name), str(r_type)],
                timeout,
            )
            out.append(
                RoutineInfo(
                    schema=str(r_schema),
                    name=str(r_name),
                    kind=str(r_type).lower(),
                    parameters=tuple(
                        ParameterInfo(name=str(name or ""), mode=str(mode or "IN"))
                        for mode, name in params[0].rows
                    ),
                )
            )
        return out


def _connection_level(exc: pymysql.MySQLError) -> bool:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return code is None or code >= 2000 or code in _CONNECTION


async def _execute_all(conn: aiomysql.Connection, sql: str, values: Sequence[str | None]) -> list[ResultSet]:
    """Run the statement and read every result set, so errors among them are raised here."""
    sets: list[ResultSet] = []
    async with conn.cursor() as cur:
        await cur.execute(sql, list(values) if values else None)
        while True:
            if cur.description:
                columns = tuple(str(d[0]) for d in cur.description)
                rows = await cur.fetchall()
                sets.append(ResultSet(columns=columns, rows=[tuple(r) for r in rows]))
            if not await cur.nextset():
                break
    return sets
