"""Does each procedure a class names exist, and take what the class passes? (`dbaasctl check`)

Checked through the DBMS catalog, nothing is executed: PostgreSQL and SQL Server by parameter name
(an overload matches when every class input is one of its parameters and every other parameter has a
default), MySQL/MariaDB and generic ODBC by count. create/rotate must be able to return key/value rows.
Messages are written for the DBA who has to fix either the procedure or the class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dbaasctl.dbms.drivers.base import DbmsError, Driver, RoutineInfo


@dataclass(frozen=True)
class OperationContract:
    operation: str  # create | rotate | delete
    procedure: str
    inputs: tuple[str, ...]  # the input keys the class passes
    expect_rows: bool


@dataclass(frozen=True)
class CheckResult:
    operation: str
    procedure: str
    ok: bool
    detail: str


def _fold(name: str, kind: str) -> str:
    name = name.lstrip("@")
    return name.lower()


def _signature(r: RoutineInfo) -> str:
    params = ", ".join((p.name.lstrip("@") or "?") + ("=default" if p.has_default else "") for p in r.inputs)
    return f"{r.schema + '.' if r.schema else ''}{r.name}({params})"


def _match_named(op: OperationContract, routine: RoutineInfo, kind: str) -> str | None:
    """None when the routine accepts the class's inputs, else what is wrong."""
    given = {_fold(n, kind) for n in op.inputs}
    params = {_fold(p.name, kind): p for p in routine.inputs}
    unknown = sorted(given - params.keys())
    missing = sorted(n for n, p in params.items() if n not in given and not p.has_default)
    problems = []
    if unknown:
        problems.append("the class passes unknown parameter(s) " + ", ".join(unknown))
    if missing:
        problems.append("the class does not pass required parameter(s) " + ", ".join(missing))
    return "; ".join(problems) or None


def _shape_problem(op: OperationContract, routine: RoutineInfo, kind: str) -> str | None:
    if not op.expect_rows:
        return None
    if kind == "postgres":
        if routine.kind == "procedure":
            return "a PostgreSQL procedure cannot return rows; make it a function RETURNS TABLE(key text, value text)"
        outs = {o.lower() for o in routine.outputs}
        if not {"key", "value"} <= outs:
            return "must return TABLE(key text, value text)"
    return None


async def verify(
    driver: Driver, operations: Sequence[OperationContract], *, timeout: float = 30.0
) -> list[CheckResult]:
    results: list[CheckResult] = []
    kind = driver.kind
    for op in operations:
        try:
            routines = await driver.describe(op.procedure, timeout=timeout)
        except DbmsError as exc:
            results.append(CheckResult(op.operation, op.procedure, False, exc.message))
            continue
        if not routines:
            results.append(
                CheckResult(
                    op.operation,
                    op.procedure,
                    False,
                    f"{op.procedure} not found: create it, or fix operations.{op.operation}.name in the class",
                )
            )
            continue
        if kind == "mysql" or driver.binding == "positional":
            results.append(_check_positional(op, routines, kind))
            continue
        problems: list[str] = []
        for routine in routines:
            problem = _match_named(op, routine, kind) or _shape_problem(op, routine, kind)
            if problem is None:
                results.append(CheckResult(op.operation, op.procedure, True, _signature(routine)))
                break
            problems.append(f"{_signature(routine)}: {problem}")
        else:
            results.append(CheckResult(op.operation, op.procedure, False, " | ".join(problems)))
    return results


def _check_positional(op: OperationContract, routines: list[RoutineInfo], kind: str) -> CheckResult:
    routine = routines[0]
    if kind == "mysql" and routine.kind != "procedure":
        return CheckResult(
            op.operation, op.procedure, False, f"{op.procedure} is a {routine.kind}; CALL needs a PROCEDURE"
        )
    want = len(routine.inputs)
    if want != len(op.inputs):
        return CheckResult(
            op.operation,
            op.procedure,
            False,
            f"{_signature(routine)} takes {want} parameter(s) but the class passes {len(op.inputs)} "
            f'(inputs "0".."{len(op.inputs) - 1}")',
        )
    return CheckResult(op.operation, op.procedure, True, _signature(routine))
