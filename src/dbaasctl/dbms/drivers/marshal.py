"""Marshalling shared by every driver: a class mistake must be a clear error, never SQL.

Procedure and parameter names are validated identifiers; inputs become bound values (by name, or by the
gapless positional keys "0", "1", ... of MySQL and ODBC); `key`/`value` result rows are read by column
name, NULL as "", duplicates refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Mapping, Sequence

from dbaasctl.dbms.drivers.base import ContractError, ProcedureError, Reason, ResultSet

# Procedure names: an identifier, optionally schema-qualified. Anything else never reaches SQL text.
PROCEDURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
# Named parameters (PostgreSQL, SQL Server): a plain identifier.
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_procedure(name: str, *, max_length: int) -> tuple[str | None, str]:
    """Validate a class's procedure name; returns (schema or None, name)."""
    if not isinstance(name, str) or not PROCEDURE_NAME.fullmatch(name):
        raise ContractError(
            f"procedure name {name!r} is not a valid identifier: use letters, digits, _ or $, "
            "optionally schema-qualified as schema.name",
            procedure=None,
        )
    schema, _, bare = name.rpartition(".")
    for part in (schema, bare):
        if len(part) > max_length:
            raise ContractError(f"procedure name part {part!r} is longer than {max_length} characters")
    return (schema or None), bare


def check_parameter_name(name: str, *, max_length: int, procedure: str) -> str:
    if not PARAMETER_NAME.fullmatch(name) or len(name) > max_length:
        raise ContractError(
            f"input {name!r} of {procedure} is not a valid parameter name (letters, digits and _, "
            f"starting with a letter or _, at most {max_length} characters)",
            procedure=procedure,
        )
    return name


def positional_values(inputs: Mapping[str, str], *, procedure: str) -> list[str]:
    """MySQL/MariaDB and generic ODBC pass inputs by position: keys must be exactly "0".."n-1"."""
    expected = [str(i) for i in range(len(inputs))]
    if sorted(inputs, key=lambda k: (len(k), k)) != expected:
        shown = ", ".join(repr(k) for k in sorted(inputs)) or "none"
        raise ContractError(
            f'inputs of {procedure} must be keyed "0".."{len(inputs) - 1}" without gaps for a '
            f"positional driver; got keys {shown}",
            procedure=procedure,
        )
    return [_input_value(inputs[k], k, procedure) for k in expected]


def _input_value(value: object, key: str, procedure: str) -> str:
    if not isinstance(value, str):
        raise ContractError(f"input {key!r} of {procedure} must be a string", procedure=procedure)
    return value


def named_values(inputs: Mapping[str, str], *, procedure: str, max_length: int) -> list[tuple[str, str]]:
    """Named drivers: validated names in a stable order (sorted), values untouched."""
    return [
        (check_parameter_name(k, max_length=max_length, procedure=procedure), _input_value(v, k, procedure))
        for k, v in sorted(inputs.items())
    ]


# ---- results ----------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    """Values are strings by contract; common scalar types are converted the obvious way."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")
    if isinstance(value, int | float | decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _column(columns: Sequence[str], wanted: str) -> int | None:
    exact = [i for i, c in enumerate(columns) if c == wanted]
    if len(exact) == 1:
        return exact[0]
    folded = [i for i, c in enumerate(columns) if c.lower() == wanted]
    return folded[0] if len(folded) == 1 else None


def rows_to_mapping(sets: Sequence[ResultSet], *, procedure: str) -> dict[str, str]:
    """Find the one row set with `key` and `value` columns and turn it into a mapping."""
    candidates = [
        (s, k, v)
        for s in sets
        if (k := _column(s.columns, "key")) is not None and (v := _column(s.columns, "value")) is not None
    ]
    if not candidates:
        seen = "; ".join("(" + ", ".join(s.columns) + ")" for s in sets) or "no result set"
        raise ProcedureError(
            Reason.BAD_RESULT_SHAPE,
            f"{procedure} returned no row set with columns key and value (got {seen})",
            procedure=procedure,
        )
    if len(candidates) > 1:
        raise ProcedureError(
            Reason.BAD_RESULT_SHAPE,
            f"{procedure} returned {len(candidates)} row sets with columns key and value; return exactly one",
            procedure=procedure,
        )
    result_set, ki, vi = candidates[0]
    out: dict[str, str] = {}
    for n, row in enumerate(result_set.rows):
        try:
            key = _text(row[ki])
            value = _text(row[vi])
        except (TypeError, UnicodeDecodeError) as exc:
            raise ProcedureError(
                Reason.BAD_RESULT_SHAPE,
                f"{procedure} row {n + 1}: key and value must be text (got {exc.__class__.__name__}: {exc})",
                procedure=procedure,
            ) from None
        if not key:
            raise ProcedureError(
                Reason.BAD_RESULT_SHAPE,
                f"{procedure} row {n + 1} has a NULL or empty key",
                procedure=procedure,
            )
        if key in out:
            raise ProcedureError(
                Reason.DUPLICATE_KEY, f"{procedure} returned key {key!r} more than once", procedure=procedure
            )
        out[key] = value or ""
    return out
