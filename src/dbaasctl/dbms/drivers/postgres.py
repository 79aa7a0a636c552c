"""PostgreSQL through asyncpg: functions called by named notation with bound parameters.

    SELECT * FROM "schema"."fn"("k8sname" => $1, ...)

Names follow PostgreSQL's rule for unquoted identifiers (ASCII case-folded), so a class written for the
reference operator (`k8sName`, `sp_Create`) reaches the same function, and are then quoted, so reserved
words work too. All columns are read and `key`/`value` picked by name, so extra columns are ignored.

A *procedure* (CREATE PROCEDURE, PostgreSQL 11+) is called with CALL instead: we learn the kind from the
server's own error (42809, raised at parse time, so nothing ran) and remember it per name. Procedures cannot
return row sets in PostgreSQL, so they only fit `delete`; create/rotate must be functions returning
TABLE(key text, value text).

On timeout or cancellation asyncpg sends a CancelRequest for the running statement; the pool waits for it
and resets the connection before reuse, so a hung procedure never leaves a busy connection in the pool.
That reset (advisory locks, cursors, LISTEN, settings) runs after every use except a keepalive ping,
which changes no session state: a ping costs one statement instead of five.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import asyncpg

from dbaasctl.dbms.drivers.base import (
    LazyPool,
    PoolStats,
    ProcedureError,
    Reason,
    ResultSet,
    RoutineInfo,
    deadline_error,
    masks_inputs,
)
from dbaasctl.dbms.drivers.marshal import (
    named_values,
    rows_to_mapping,
    split_procedure,
)
from dbaasctl.dbms.drivers.postgres_catalog import routine, routine_exists, routine_rows
from dbaasctl.dbms.drivers.postgres_errors import AUTHENTICATION_STATES, postgres_error
from dbaasctl.dbms.dsn import Dsn
from dbaasctl.dbms.tls import TlsState, from_ssl_object, satisfies

MAX_IDENTIFIER = 63  # PostgreSQL silently truncates longer names: refuse them instead


def quote_ident(name: str) -> str:
    """Quote an identifier that was already validated (letters, digits, _, $)."""
    return '"' + name.lower().replace('"', '""') + '"'


def qualified(procedure: str) -> tuple[str | None, str, str]:
    schema, bare = split_procedure(procedure, max_length=MAX_IDENTIFIER)
    text = (quote_ident(schema) + "." if schema else "") + quote_ident(bare)
    return schema, bare, text


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no type hints
    """A pool connection that a keepalive ping can release without the session reset.

    asyncpg's pool resets every released connection (advisory locks, cursors, LISTEN, settings: four
    statements). A ping's `SELECT 1` changes none of that, so the ping flags its connection to skip the
    reset once; every other use (procedure calls, catalog lookups) leaves the flag down and is reset.
    """

    _skip_reset = False

    def skip_next_reset(self) -> None:
        self._skip_reset = True

    def take_skip_reset(self) -> bool:
        skip, self._skip_reset = self._skip_reset, False
        return skip


async def _reset(conn: asyncpg.Connection) -> None:
    """The pool's default reset, bar flagged pings; asyncpg has already rolled back any transaction."""
    if isinstance(conn, _PooledConnection) and conn.take_skip_reset():
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


class PostgresDriver:
    kind = "postgres"
    binding = "named"

    def __init__(self, dsn: Dsn, *, max_connections: int = 10, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._secrets = dsn.secrets()
        self._max = max(1, max_connections)
        self._connect_timeout = connect_timeout
        self._pool: LazyPool[asyncpg.Pool] = LazyPool(self._open_pool)
        self._procedures: set[str] = set()  # names known to be procedures (CALL)
        self.tls_minimum = TlsState.PLAINTEXT
        self._tls = TlsState.UNKNOWN

    def tls_state(self) -> TlsState:
        """TLS state of the connection used last (see dbaasctl.dbms.tls)."""
        return self._tls

    def _observe_tls(self, conn: asyncpg.Connection, procedure: str | None) -> None:
        """Record the link's real TLS state; refuse a procedure call over a link below the policy."""
        transport = getattr(conn, "_transport", None)
        self._tls = from_ssl_object(transport.get_extra_info("ssl_object") if transport else None)
        if procedure is not None and not satisfies(self._tls, self.tls_minimum):
            raise ProcedureError(
                Reason.TLS_REFUSED,
                f"{procedure}: not called: the link is {self._tls}, the endpoint's TLS policy requires "
                f"{self.tls_minimum}",
                procedure=procedure,
            )

    # ---- pool -------------------------------------------------------------------------------------
    async def _open_pool(self) -> asyncpg.Pool:
        query: dict[str, str] = {
            "host": self._dsn.host or "localhost",
            "port": str(self._dsn.port or 5432),
            "dbname": self._dsn.database or "postgres",
        }
        query.update(self._dsn.options)
        return await asyncpg.create_pool(
            dsn="postgresql://?" + urlencode(query),
            user=self._dsn.user or None,
            password=self._dsn.password or None,
            min_size=0,
            max_size=self._max,
            timeout=self._connect_timeout,
            command_timeout=None,
            max_inactive_connection_lifetime=300.0,
            server_settings={"application_name": "dbaasctl"},
            connection_class=_PooledConnection,
            reset=_reset,
        )

    def stats(self) -> PoolStats:
        pool = self._pool.current
        if pool is None:
            return PoolStats(size=0, idle=0)
        return PoolStats(size=pool.get_size(), idle=pool.get_idle_size())

    async def close(self) -> None:
        pool = self._pool.detach()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    # ---- operations -------------------------------------------------------------------------------
    @masks_inputs
    async def call(
        self, procedure: str, inputs: Mapping[str, str], *, timeout: float, expect_rows: bool
    ) -> dict[str, str]:
        schema, bare, target = qualified(procedure)
        params = named_values(inputs, procedure=procedure, max_length=MAX_IDENTIFIER)
        args = ", ".join(f"{quote_ident(name)} => ${i}" for i, (name, _) in enumerate(params, start=1))
        values = [value for _, value in params]
        sets = await self._run(procedure, schema, bare, target, args, values, timeout, expect_rows)
        return rows_to_mapping(sets, procedure=procedure) if expect_rows else {}

    async def _run(
        self,
        procedure: str,
        schema: str | None,
        bare: str,
        target: str,
        args: str,
        values: Sequence[str],
        timeout: float,
        expect_rows: bool,
    ) -> list[ResultSet]:
        is_procedure = procedure.lower() in self._procedures
        try:
            async with asyncio.timeout(timeout):
                pool = await self._pool.get()
                async with pool.acquire() as conn:
                    self._observe_tls(conn, procedure)
                    try:
                        return await self._execute(conn, target, args, values, call=is_procedure)
                    except asyncpg.WrongObjectTypeError as exc:
                        if is_procedure or "is a procedure" not in str(exc):
                            raise
                        # Raised while planning, before anything ran: safe to re-issue as CALL.
                        self._procedures.add(procedure.lower())
                        result = await self._execute(conn, target, args, values, call=True)
                        if expect_rows:
                            raise ProcedureError(
                                Reason.BAD_RESULT_SHAPE,
                                f"{procedure} is a PostgreSQL procedure, which cannot return a row set; "
                                "make create/rotate a function RETURNING TABLE(key text, value text)",
                                procedure=procedure,
                            ) from None
                        return result
                    except asyncpg.UndefinedFunctionError as exc:
                        if getattr(exc, "context", None):
                            # Raised by a statement inside the procedure (a missing extension, say):
                            # the procedure itself was found and called with these inputs.
                            raise postgres_error(
                                exc, procedure, Reason.PROCEDURE_FAILED, secrets=self._secrets
                            ) from None
                        exists = await routine_exists(conn, schema, bare)
                        raise postgres_error(
                            exc,
                            procedure,
                            Reason.WRONG_PARAMETERS if exists else Reason.PROCEDURE_NOT_FOUND,
                            secrets=self._secrets,
                        ) from None
        except ProcedureError:
            raise
        except TimeoutError:
            raise deadline_error(procedure, timeout, expired=True, aftermath="cancelled") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            error = postgres_error(exc, procedure, secrets=self._secrets)
            if error.reason is Reason.CONNECTION_FAILED:
                await self._expire()
            raise error from None

    async def _execute(
        self, conn: asyncpg.Connection, target: str, args: str, values: Sequence[str], *, call: bool
    ) -> list[ResultSet]:
        # Only validated, quoted identifiers and $n placeholders are in the text; values are bound.
        sql = f"CALL {target}({args})" if call else f"SELECT * FROM {target}({args})"  # noqa: S608
        # Through the connection's statement cache: the text is the same for every call of a procedure,
        # so it is parsed once per connection, not once per call (one round trip fewer each time).
        rows = await conn.fetch(sql, *values)
        if rows:
            columns = tuple(rows[0].keys())
        else:  # no row to name the columns: only the statement's description can (nothing runs again)
            columns = tuple(a.name for a in (await conn.prepare(sql)).get_attributes())
        return [ResultSet(columns=columns, rows=[tuple(r) for r in rows])]

    async def _expire(self) -> None:
        """After a connection-level failure, idle connections are likely dead too (server restart)."""
        pool = self._pool.current
        if pool is not None:
            with contextlib.suppress(asyncpg.InterfaceError, OSError):
                await pool.expire_connections()

    async def ping(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                pool = await self._pool.get()
                async with pool.acquire() as conn:
                    self._observe_tls(conn, None)
                    await conn.fetchval("SELECT 1")
                    conn.skip_next_reset()  # reached only when the ping succeeded
        except ProcedureError:
            raise
        except TimeoutError:
            await self._expire()
            raise ProcedureError(
                Reason.OPERATION_TIMEOUT, f"ping did not answer within {timeout:g}s"
            ) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            await self._expire()
            auth = getattr(exc, "sqlstate", None) in AUTHENTICATION_STATES
            raise postgres_error(
                exc, None, None if auth else Reason.CONNECTION_FAILED, secrets=self._secrets
            ) from None

    async def describe(self, procedure: str, *, timeout: float) -> list[RoutineInfo]:
        schema, bare, _ = qualified(procedure)
        try:
            async with asyncio.timeout(timeout):
                pool = await self._pool.get()
                async with pool.acquire() as conn:
                    rows = await routine_rows(conn, schema, bare)
        except TimeoutError:
            raise ProcedureError(
                Reason.OPERATION_TIMEOUT, f"catalog lookup did not answer within {timeout:g}s"
            ) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise postgres_error(exc, procedure, secrets=self._secrets) from None
        return [routine(row) for row in rows]
