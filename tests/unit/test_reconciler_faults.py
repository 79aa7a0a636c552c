"""Systematic fault injection: every API request and DBMS call of create, rotate and delete, each failure
kind, then convergence and the exactly-once invariants.

The flows' requests are enumerated from a clean run, so a new request in the reconciler is covered
without editing this file. `FAULT_MATRIX` collects the counts; the last test prints them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from reconciler_fakes import CRASH, KINDS, RESET, TIMEOUT_APPLIED, Fault
from reconciler_harness import NS, Harness

from dbaasctl.controller.database import DATABASES

#: (operation, injection point, kind) → {"runs": n, "creates": ..., "rotates": ..., "deletes": ...}
FAULT_MATRIX: dict[tuple[str, str, str], Counter[str]] = {}


async def _provisioned() -> Harness:
    h = Harness()
    await h.start()
    h.create_database()
    await h.converge()
    assert h.ready() is not None
    return h


async def _start(op: str) -> Harness:
    if op == "create":
        h = Harness()
        await h.start()
        h.create_database()
        return h
    h = await _provisioned()
    if op == "rotate":
        await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "2026-02"}}})
    else:
        await h.kube.delete(DATABASES.path(NS, "orders"))
    return h


async def _trace(op: str) -> tuple[list[str], list[str]]:
    """The clean flow: API request labels in order, and the DBMS calls."""
    h = await _start(op)
    h.api.requests.clear()
    h.dbms.calls.clear()
    await h.converge()
    return list(h.api.requests), [c.operation for c in h.dbms.calls]


def _points(requests: list[str], calls: list[str]) -> list[tuple[str, str, int]]:
    """(where, label, nth): every request of the flow by its occurrence, and every DBMS call."""
    seen: Counter[str] = Counter()
    points = []
    for label in requests:
        seen[label] += 1
        points.append(("api", label, seen[label]))
    points += [("dbms", call, 1) for call in dict.fromkeys(calls)]
    return points


CASES: list[Any] = []
for _op in ("create", "rotate", "delete"):
    for _kind in KINDS:
        CASES.append(pytest.param(_op, _kind, id=f"{_op}-{_kind}"))


@pytest.mark.parametrize(("op", "kind"), CASES)
async def test_fault_matrix(op: str, kind: str) -> None:
    requests, calls = await _trace(op)
    assert calls == [op], calls  # the clean flow calls its procedure once
    for where, label, nth in _points(requests, calls):
        h = await _start(op)
        base = Counter(c.operation for c in h.dbms.calls if c.applied)
        if where == "api":
            h.api.faults.append(Fault(label, kind, nth))
        else:
            h.dbms.faults.append((label, kind))
        # Passes until stable; a crash restarts the reconciler with empty memory.
        for _ in range(3):
            await h.converge(passes=40)
        point = f"{where}:{label}#{nth}"
        done = Counter(c.operation for c in h.dbms.calls if c.applied) - base
        cell = FAULT_MATRIX.setdefault((op, point, kind), Counter())
        cell["runs"] += 1
        cell.update({k: v for k, v in done.items()})
        _assert_converged(h, op, point, kind, done)


def _lost_credentials(h: Harness, kind: str, point: str) -> bool:
    """Could this fault have destroyed credentials the DBMS issued (so a second rotate is the only
    repair)? Only a crash, or an answer lost at the DBMS call itself."""
    return kind == CRASH or (point.startswith("dbms:") and kind in (TIMEOUT_APPLIED, RESET, CRASH))


def _assert_converged(h: Harness, op: str, point: str, kind: str, done: Counter[str]) -> None:
    where = f"{op} / {point} / {kind}"
    assert not h.violations, (where, h.violations)
    # Create runs again only when no success was ever seen: the call's answer was lost, or the process
    # died before the credentials it returned were stored anywhere.
    unseen = kind == CRASH or (point.startswith("dbms:") and kind == TIMEOUT_APPLIED)
    assert h.dbms.repeats <= (1 if op == "create" and unseen else 0), (where, h.dbms.repeats)
    if op == "delete":
        assert h.db() is None, f"{where}: the Database is still there: {h.ready()}"
        assert h.secret() is None, f"{where}: the Secret was orphaned"
        assert "orders" not in h.dbms.passwords, f"{where}: the database was orphaned"
        # An outcome that was never seen (a crash, a lost answer) means calling the idempotent delete
        # procedure again.
        assert 1 <= done["delete"] <= (2 if unseen else 1), (where, done)
        return
    db = h.db()
    assert db is not None
    status = db["status"]
    assert h.ready() is not None
    assert h.ready()[0] == "True", (where, h.ready())  # type: ignore[index]
    secret = h.secret()
    assert secret is not None, where
    assert secret["password"] == h.dbms.passwords["orders"], where
    assert "dbaasctl.io/finalizer" in db["metadata"]["finalizers"]
    assert status.get("pendingOperation") is None, where
    assert status["credentialGeneration"] >= 1
    if op == "create":
        assert 1 <= done["create"] <= (2 if unseen else 1), (where, done)
        assert done["rotate"] == 0, (where, done)
    else:
        assert done["create"] == 0, (where, done)
        assert 1 <= done["rotate"] <= (2 if _lost_credentials(h, kind, point) else 1), (where, done)
        assert status["rotationToken"] == "2026-02"


def test_print_fault_matrix() -> None:
    """Runs last in this module: the matrix for the record (pytest -s shows it)."""
    if not FAULT_MATRIX:
        pytest.skip("run with the matrix tests")
    totals: Counter[str] = Counter()
    for (op, point, kind), cell in sorted(FAULT_MATRIX.items()):
        totals[op] += cell["runs"]
        print(f"{op:7} {point:40} {kind:16} " + " ".join(f"{k}={v}" for k, v in sorted(cell.items())))
    print("injections per operation:", dict(totals))
