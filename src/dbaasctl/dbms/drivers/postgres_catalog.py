"""What PostgreSQL's catalog says about a routine: whether it exists, and its kind and parameters.

The driver asks the catalog in two places: after an "undefined function" error, to tell a missing routine
from wrong parameter names, and for `describe`. The queries and the decoding of `pg_proc` rows (modes,
defaults, `"char"` values that asyncpg returns as bytes) are kept here, apart from calling routines.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from dbaasctl.dbms.drivers.base import ParameterInfo, RoutineInfo

_PROC_KINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
_ARG_MODES = {"i": "IN", "o": "OUT", "b": "INOUT", "v": "IN", "t": "TABLE"}


async def routine_exists(conn: asyncpg.Connection, schema: str | None, bare: str) -> bool:
    """Whether a routine of that name is visible (unqualified) or exists in `schema`."""
    found = await conn.fetchval(
        """
        SELECT count(*) FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE p.proname = $1
           AND CASE WHEN $2::text IS NULL THEN pg_catalog.pg_function_is_visible(p.oid)
                    ELSE n.nspname = $2 END
        """,
        bare.lower(),
        schema.lower() if schema else None,
    )
    return bool(found)


async def routine_rows(conn: asyncpg.Connection, schema: str | None, bare: str) -> list[Any]:
    """The `pg_proc` rows of every routine of that name, for `routine`."""
    return await conn.fetch(  # type: ignore[no-any-return]
        """
        SELECT n.nspname, p.proname, p.prokind, p.pronargs, p.pronargdefaults,
               p.proargnames, p.proargmodes
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE p.proname = $1
           AND CASE WHEN $2::text IS NULL THEN pg_catalog.pg_function_is_visible(p.oid)
                    ELSE n.nspname = $2 END
         ORDER BY p.oid
        """,
        bare.lower(),
        schema.lower() if schema else None,
    )


def routine(row: Any) -> RoutineInfo:
    """A `routine_rows` row decoded: the trailing `pronargdefaults` IN/INOUT parameters have defaults."""
    nargs: int = row["pronargs"]
    ndefaults: int = row["pronargdefaults"]
    names: list[str] = list(row["proargnames"] or [])
    # "char"[] comes back as bytes from asyncpg
    modes = [_char(m) for m in (row["proargmodes"] or ["i"] * nargs)]
    params: list[ParameterInfo] = []
    seen_in = 0
    for i, mode_code in enumerate(modes):
        mode = _ARG_MODES.get(mode_code, "IN")
        has_default = False
        if mode in ("IN", "INOUT"):
            has_default = seen_in >= nargs - ndefaults
            seen_in += 1
        params.append(
            ParameterInfo(name=names[i] if i < len(names) else "", mode=mode, has_default=has_default)
        )
    return RoutineInfo(
        schema=row["nspname"],
        name=row["proname"],
        kind=_PROC_KINDS.get(_char(row["prokind"]), "function"),
        parameters=tuple(params),
    )


def _char(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
