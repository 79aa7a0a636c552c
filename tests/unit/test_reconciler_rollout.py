"""Roll-out of consumers after a rotation, on the in-memory API: opted-in workloads get their pod
template annotated with the credential generation (a rolling restart), the others are left alone."""

from __future__ import annotations

from typing import Any

import pytest
from reconciler_fakes import CRASH, FORBIDDEN, SERVER_ERROR, Fault
from reconciler_harness import NS, Harness, database_class, opted_in_workload

from dbaasctl.controller import reasons
from dbaasctl.controller.database.rollout import (
    DAEMONSETS,
    DEPLOYMENTS,
    ROLLOUT_ANNOTATION,
    STATEFULSETS,
    opted_in,
    template_annotation,
)
from dbaasctl.kube.resources import ResourceRef

KEY = template_annotation("orders")


async def _harness(rollout: bool = True, **klass: Any) -> Harness:
    h = Harness(klass=database_class(**klass), rollout=rollout)
    await h.start()
    h.kube.seed(DEPLOYMENTS, opted_in_workload(DEPLOYMENTS, "web", "orders"))
    h.kube.seed(STATEFULSETS, opted_in_workload(STATEFULSETS, "worker", "payments, orders-credentials"))
    h.kube.seed(DAEMONSETS, opted_in_workload(DAEMONSETS, "agent", None))
    h.kube.seed(DEPLOYMENTS, opted_in_workload(DEPLOYMENTS, "billing", "payments"))
    h.create_database()
    await h.converge()
    return h


def _status(h: Harness) -> dict[str, Any]:
    status: dict[str, Any] = (h.db() or {}).get("status") or {}
    return status


def _generation(h: Harness, ref: ResourceRef, name: str) -> str | None:
    obj = h.kube.read(ref, NS, name) or {}
    annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
    value: str | None = annotations.get(KEY)
    return value


async def test_rotation_rolls_exactly_the_workloads_that_opted_in() -> None:
    h = await _harness()
    assert _generation(h, DEPLOYMENTS, "web") is None  # create rolls nothing: nothing ran yet
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.converge()
    assert _generation(h, DEPLOYMENTS, "web") == "2"  # by Database name
    assert _generation(h, STATEFULSETS, "worker") == "2"  # by Secret name, in a list
    assert _generation(h, DAEMONSETS, "agent") is None
    assert _generation(h, DEPLOYMENTS, "billing") is None
    notes = [n for _, r, n in h.events.items if r == reasons.ROLLED_OUT]
    assert notes == ["credential generation 2: rolled Deployment/web, StatefulSet/worker"]
    h.api.requests.clear()
    await h.converge()  # nothing behind: no patch
    assert not [r for r in h.api.requests if r in ("patch web", "patch worker")]


async def test_nothing_is_rolled_unless_the_operator_is_told_to() -> None:
    h = await _harness(rollout=False)
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.converge()
    assert _generation(h, DEPLOYMENTS, "web") is None
    assert reasons.ROLLED_OUT not in h.events.reasons()


async def test_two_phase_rolls_at_rotation_while_the_old_credentials_still_work() -> None:
    h = await _harness(retire=True, grace="10m")
    first = h.secret()
    assert first is not None
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    await h.reconcile()
    assert _generation(h, DEPLOYMENTS, "web") == "2"
    assert h.dbms.accepts(first["username"], first["password"])  # old pods keep working meanwhile


async def test_rotation_recorded_by_adoption_still_rolls() -> None:
    h = await _harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    # The Secret is written, then the process dies before status records the rotation.
    h.api.faults.append(Fault("patch secrets", CRASH))
    for _ in range(3):
        await h.converge()
    assert h.crashes == 1
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    assert _generation(h, DEPLOYMENTS, "web") == "2"


async def test_a_failed_roll_out_is_an_event_and_is_tried_again_while_the_rotation_stands() -> None:
    h = await _harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    h.api.faults.append(Fault("patch web", SERVER_ERROR))  # the request labelled by its last path part
    await h.reconcile()
    assert _generation(h, DEPLOYMENTS, "web") is None
    assert _generation(h, STATEFULSETS, "worker") == "2"
    failed = [n for _, r, n in h.events.items if r == reasons.ROLLOUT_FAILED]
    assert failed == ["could not roll: Deployment/web: 500 InternalError"]
    ready = h.ready()
    assert ready is not None
    assert ready[:2] == ("True", reasons.ROTATED)
    assert _status(h)["rolledOutGeneration"] == 1

    await h.converge()  # the retry, ROLLOUT_RETRY seconds later
    assert _generation(h, DEPLOYMENTS, "web") == "2"
    assert _status(h)["rolledOutGeneration"] == 2
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]
    h.api.requests.clear()
    await h.converge()
    assert not [r for r in h.api.requests if r.startswith("patch")]


async def test_a_roll_out_refused_by_rbac_names_what_the_operator_may_not_do() -> None:
    """The administrator must grant it (the chart's `operator.rolloutWorkloads`), so the Event quotes the
    API server's refusal rather than a bare status."""
    h = await _harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    h.api.faults.append(Fault("patch web", FORBIDDEN))
    await h.reconcile()
    failed = [n for _, r, n in h.events.items if r == reasons.ROLLOUT_FAILED]
    assert failed == [
        "could not roll: Deployment/web: 403 Forbidden: patch web is forbidden: cannot patch this resource"
    ]


async def test_an_operator_stopped_between_the_rotation_record_and_the_roll_out_rolls_after_restart() -> None:
    h = await _harness()
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    # The intent marker, then the record of the rotation: applied, and the process dies right after.
    h.api.faults.append(Fault("patch databases/status", CRASH, nth=2))
    await h.reconcile()
    assert h.crashes == 1
    assert _status(h)["credentialGeneration"] == 2
    assert _generation(h, DEPLOYMENTS, "web") is None  # nothing rolled before the crash

    await h.converge()
    assert _generation(h, DEPLOYMENTS, "web") == "2"
    assert _generation(h, STATEFULSETS, "worker") == "2"
    assert _status(h)["rolledOutGeneration"] == 2
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate"]


async def test_a_roll_out_that_keeps_failing_never_holds_back_retire() -> None:
    h = await _harness(retire=True, grace="10m")
    first = h.secret()
    assert first is not None
    await h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": "v1"}}})
    h.api.faults.extend(Fault("patch web", SERVER_ERROR) for _ in range(100))
    await h.converge(passes=60)  # every try fails; the grace period runs out meanwhile
    assert [c.operation for c in h.dbms.calls] == ["create", "rotate", "retire"]
    assert not h.dbms.accepts(first["username"], first["password"])
    assert _generation(h, DEPLOYMENTS, "web") is None
    assert _status(h)["rolledOutGeneration"] == 1  # still owed, still tried


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("orders", True),
        (" payments , orders ", True),
        ("orders-credentials", True),
        ("order", False),
        ("", False),
    ],
)
def test_opted_in(value: str, expected: bool) -> None:
    workload = {"metadata": {"annotations": {ROLLOUT_ANNOTATION: value}}}
    assert opted_in(workload, "orders", "orders-credentials") is expected


def test_template_annotation_is_a_valid_key_for_any_name() -> None:
    assert template_annotation("orders") == "dbaasctl.io/credential-generation.orders"
    long = template_annotation("x" * 253)
    assert len(long.split("/", 1)[1]) <= 63
    assert long != template_annotation("x" * 252)
