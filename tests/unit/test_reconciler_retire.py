"""Two-phase rotation on the in-memory API and an A/B DBMS: rotate publishes new credentials while the
previous ones stay valid, retire ends those after the grace period, exactly once per rotation, through
every fault the rotate and retire flows can meet. Without retire, rotation stays a cut-over."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from reconciler_fakes import CRASH, KINDS, TIMEOUT_APPLIED, Fault
from reconciler_harness import NS, Harness, database_class, opted_in_workload

from dbaasctl.controller import reasons
from dbaasctl.controller.database import DATABASES
from dbaasctl.controller.database.rollout import DEPLOYMENTS, template_annotation
from dbaasctl.kube.controller import Result
from dbaasctl.kube.resources import SECRETS
from dbaasctl.observability.metrics import sample_value

GRACE = 600.0
PREVIOUS = "-credentials-previous"
FAULT_MATRIX: dict[tuple[str, str], Counter[str]] = {}


async def _two_phase(grace: str = "10m", interval: str | None = None, *, rollout: bool = False) -> Harness:
    h = Harness(klass=database_class(retire=True, grace=grace, interval=interval), rollout=rollout)
    await h.start()
    if rollout:
        h.kube.seed(DEPLOYMENTS, opted_in_workload(DEPLOYMENTS, "web", "orders"))
    h.create_database()
    await h.converge()
    assert h.ready() is not None
    assert h.ready()[0] == "True"
    return h


def _status(h: Harness) -> dict[str, Any]:
    return dict((h.db() or {}).get("status") or {})


def _ops(h: Harness) -> list[str]:
    return [c.operation for c in h.dbms.calls if c.applied]


async def test_rotation_keeps_the_previous_credentials_until_retire() -> None:
    h = await _two_phase()
    first = h.secret()
    assert first is not None
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()  # one pass: the work queue would wait out the grace period after it
    second = h.secret()
    assert second is not None
    assert second["username"] != first["username"]
    # Both log in during the grace period; the superseded ones wait in the previous Secret.
    assert h.dbms.accepts(first["username"], first["password"])
    assert h.dbms.accepts(second["username"], second["password"])
    assert h.secret(suffix=PREVIOUS) == first
    status = _status(h)
    assert status["credentialGeneration"] == 2
    assert status["previousCredentialsRetireAt"] is not None
    assert h.ready()[:2] == ("True", reasons.ROTATED)  # type: ignore[index]
    assert "stay valid until" in h.ready()[2]  # type: ignore[index]

    h.clock.advance(GRACE - 5)
    outcome = await h.reconcile()
    assert "retire" not in _ops(h)  # not before the grace period ends
    assert isinstance(outcome, Result)
    assert outcome.requeue_after == pytest.approx(6.0)  # the grace period, rounded up to a second
    h.clock.advance(6)
    await h.converge()
    assert _ops(h) == ["create", "rotate", "retire"]
    assert not h.dbms.accepts(first["username"], first["password"])  # the old ones are refused
    assert h.dbms.accepts(second["username"], second["password"])
    assert h.kube.read(SECRETS, NS, f"orders{PREVIOUS}") is None
    status = _status(h)
    assert status.get("previousCredentialsRetireAt") is None
    assert status.get("pendingOperation") is None
    assert reasons.RETIRED in h.events.reasons()
    ready = h.ready()
    assert ready is not None
    assert ready[:2] == ("True", reasons.ROTATED)
    assert "previous credentials were retired" in ready[2]
    assert h.dbms.bad_retires == 0
    await h.converge()
    assert _ops(h).count("retire") == 1


async def test_without_retire_a_rotation_is_a_cut_over() -> None:
    h = Harness(klass=database_class(interval=None))
    await h.start()
    h.create_database()
    await h.converge()
    first = h.secret()
    assert first is not None
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.converge()
    assert not h.dbms.accepts(first["username"], first["password"])
    assert h.kube.read(SECRETS, NS, f"orders{PREVIOUS}") is None
    assert _status(h).get("previousCredentialsRetireAt") is None
    h.clock.advance(GRACE * 2)
    await h.converge()
    assert _ops(h) == ["create", "rotate"]


async def test_rotations_asked_for_in_the_grace_period_are_queued_once() -> None:
    h = await _two_phase(interval="15m")
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()
    # Two more requests and the schedule fall due inside the grace period.
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v2"}}})
    outcome = await h.reconcile()
    assert isinstance(outcome, Result)
    assert outcome.requeue_after == pytest.approx(GRACE, abs=1.0)  # status keeps whole seconds
    assert h.ready()[:2] == ("True", reasons.ROTATION_QUEUED)  # type: ignore[index]
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v3"}}})
    h.clock.advance(GRACE - 2)
    await h.reconcile()
    assert _ops(h) == ["create", "rotate"]
    assert h.events.reasons().count(reasons.ROTATION_QUEUED) == 1
    h.clock.advance(3)
    await h.converge()
    # Retire first, then one rotation for everything that asked: never lost, never doubled.
    assert _ops(h) == ["create", "rotate", "retire", "rotate"]
    assert _status(h)["rotationToken"] == "v3"
    assert _status(h)["previousCredentialsRetireAt"] is not None
    assert h.dbms.bad_retires == 0


async def test_secret_deleted_during_the_grace_period_waits_for_retire_then_rotates() -> None:
    h = await _two_phase()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()
    await h.kube.delete(SECRETS.path(NS, "orders-credentials"))
    await h.reconcile()
    assert h.ready()[:2] == ("False", reasons.ROTATION_QUEUED)  # type: ignore[index]
    h.clock.advance(GRACE + 1)
    await h.converge()
    assert _ops(h) == ["create", "rotate", "retire", "rotate"]
    secret = h.secret()
    assert secret is not None
    assert h.dbms.accepts(secret["username"], secret["password"])
    assert h.ready()[0] == "True"  # type: ignore[index]


async def test_retire_failure_keeps_ready_true_and_is_retried() -> None:
    h = await _two_phase()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()
    h.dbms.faults.append(("retire", "5xx"))
    h.clock.advance(GRACE + 1)
    await h.reconcile()
    assert h.ready()[:2] == ("True", reasons.RETIRE_FAILED)  # type: ignore[index]
    assert sample_value(h.metrics_registry, "dbaasctl_database_rotations_failing") == 1
    await h.converge()
    assert sample_value(h.metrics_registry, "dbaasctl_database_rotations_failing") == 0
    assert _ops(h) == ["create", "rotate", "retire"]
    assert _status(h).get("previousCredentialsRetireAt") is None
    assert h.ready()[:2] == ("True", reasons.ROTATED)  # type: ignore[index]


async def test_class_dropping_retire_leaves_the_previous_credentials_without_a_call() -> None:
    h = await _two_phase()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()
    h.classes["pg"] = database_class()
    h.clock.advance(GRACE + 1)
    await h.converge()
    assert _ops(h) == ["create", "rotate"]
    assert _status(h).get("previousCredentialsRetireAt") is None
    assert h.kube.read(SECRETS, NS, f"orders{PREVIOUS}") is None
    assert ("Warning", reasons.RETIRED) in [(t, r) for t, r, _ in h.events.items]


async def test_deleting_in_the_grace_period_removes_the_previous_secret() -> None:
    h = await _two_phase()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()
    await h.kube.delete(DATABASES.path(NS, "orders"))
    await h.converge()
    assert h.db() is None
    assert h.kube.read(SECRETS, NS, f"orders{PREVIOUS}") is None
    assert not h.dbms.logins


# -- the fault matrix: every request and call of rotate + retire, every failure kind -------------


async def _rotate_and_retire(h: Harness) -> None:
    """Drive the queue: the rotation, then past the grace period, until everything settled."""
    for _ in range(4):
        await h.converge(passes=40)
        h.clock.advance(GRACE + 1)
    await h.converge(passes=40)


async def _trace(rollout: bool) -> tuple[list[str], list[str]]:
    h = await _two_phase(rollout=rollout)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "2026-02"}}})
    h.api.requests.clear()
    h.dbms.calls.clear()
    await _rotate_and_retire(h)
    return list(h.api.requests), [c.operation for c in h.dbms.calls]


@pytest.mark.parametrize("rollout", [False, True], ids=["", "roll-out"])
@pytest.mark.parametrize("kind", KINDS)
async def test_fault_matrix_two_phase(kind: str, rollout: bool) -> None:
    requests, calls = await _trace(rollout)
    assert calls == ["rotate", "retire"], calls
    seen: Counter[str] = Counter()
    points: list[tuple[str, str, int]] = []
    for label in requests:
        seen[label] += 1
        points.append(("api", label, seen[label]))
    points += [("dbms", call, 1) for call in calls]
    for where, label, nth in points:
        h = await _two_phase(rollout=rollout)
        first = h.secret()
        assert first is not None
        await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "2026-02"}}})
        if where == "api":
            h.api.faults.append(Fault(label, kind, nth))
        else:
            h.dbms.faults.append((label, kind))
        h.dbms.calls.clear()
        await _rotate_and_retire(h)
        point = f"{where}:{label}#{nth}" + (" (roll-out)" if rollout else "")
        done = Counter(c.operation for c in h.dbms.calls if c.applied)
        cell = FAULT_MATRIX.setdefault((point, kind), Counter())
        cell["runs"] += 1
        cell.update(done)
        _assert_two_phase(h, point, kind, done, first)


def _assert_two_phase(h: Harness, point: str, kind: str, done: Counter[str], first: dict[str, str]) -> None:
    where = f"{point} / {kind}"
    assert not h.violations, (where, h.violations)
    assert h.dbms.bad_retires == 0, where  # never the credentials in use
    unseen = kind == CRASH or (point.startswith("dbms:") and kind == TIMEOUT_APPLIED)
    rotate_lost = kind == CRASH or (point.startswith("dbms:rotate#1") and unseen)
    assert 1 <= done["rotate"] <= (2 if rotate_lost else 1), (where, done)
    assert 1 <= done["retire"] <= (2 if unseen else 1), (where, done)
    assert done["create"] == 0, (where, done)
    status = _status(h)
    ready = h.ready()
    assert ready is not None, where
    assert ready[0] == "True", (where, ready)
    assert status.get("pendingOperation") is None, where
    assert status.get("previousCredentialsRetireAt") is None, where
    assert status["rotationToken"] == "2026-02", where
    secret = h.secret()
    assert secret is not None, where
    # Only the credentials in the Secret log in: the superseded ones were retired.
    assert h.dbms.logins == {secret["username"]: secret["password"]}, where
    assert not h.dbms.accepts(first["username"], first["password"]), where
    assert h.kube.read(SECRETS, NS, f"orders{PREVIOUS}") is None, where
    if point.endswith("(roll-out)"):
        generation = status["credentialGeneration"]
        assert status["rolledOutGeneration"] == generation, where
        web = h.kube.read(DEPLOYMENTS, NS, "web") or {}
        annotations = web["spec"]["template"]["metadata"].get("annotations") or {}
        assert annotations.get(template_annotation("orders")) == str(generation), where


def test_print_two_phase_fault_matrix() -> None:
    """Runs last in this module: the matrix for the record (pytest -s shows it)."""
    if not FAULT_MATRIX:
        pytest.skip("run with the matrix tests")
    for (point, kind), cell in sorted(FAULT_MATRIX.items()):
        print(f"rotate+retire {point:40} {kind:16} " + " ".join(f"{k}={v}" for k, v in sorted(cell.items())))
    print("injections:", sum(c["runs"] for c in FAULT_MATRIX.values()))
