"""`decide` row by row: observed state and time in, one step out (sample-controller's syncHandler tests,
with the expected action per row). No I/O anywhere: every input is built here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from reconciler_harness import database_class, operator_config

from dbaasctl.api.database import Database, DatabaseStatus, PendingOperation
from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Admission, AdmissionError, Plan
from dbaasctl.controller.config import ConfigReconciler, ConfigState
from dbaasctl.controller.database import decide
from dbaasctl.controller.database.model import (
    Adopt,
    Blocked,
    Create,
    Delete,
    Held,
    Nothing,
    NotReady,
    Observed,
    Release,
    RemoveAnnotation,
    RepairLabels,
    RepairSecret,
    Rotate,
    SecretView,
    Wait,
)
from dbaasctl.dbms.endpoints import EndpointRegistry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OURS = SecretView(exists=True, owned=True, generation=1)


def _plan(rotate: bool = True, interval: str | None = None) -> Plan:
    state = ConfigState(config_ref="ops/dbaasctl")
    klass = database_class(rotate=rotate, interval=interval)
    reconciler = ConfigReconciler(
        client=None,  # type: ignore[arg-type] # _build makes no request
        namespace="ops",
        name="dbaasctl",
        state=state,
        registry=EndpointRegistry(),
        get_config=operator_config,
        get_class={"pg": klass}.get,
        get_secret=lambda _: None,
        on_bindings_changed=lambda _: None,
    )
    state.bindings, _ = reconciler._build(OperatorConfig.model_validate(operator_config()))
    state.found = True
    admission = Admission(state, {"pg": klass}.get, None, lambda _: "postgres")
    db = Database.model_validate(
        {"metadata": {"name": "orders", "namespace": "shop"}, "spec": {"endpoint": "pg"}}
    )
    return admission.admit(db, strict=True)


PLAN = _plan()
PLAN_NO_ROTATE = _plan(rotate=False)
PLAN_HOURLY = _plan(interval="1h")
REFUSED = AdmissionError(reasons.ENDPOINT_NOT_FOUND, "endpoint 'pg' is not declared")
PROVISIONED = DatabaseStatus(provisioned_at=NOW - timedelta(minutes=30), credential_generation=1)
HELD = Held("rotate", 2, {"password": "x"}, "why")


def observed(**kw: Any) -> Observed:
    base = Observed(
        key="shop/orders",
        generation=1,
        deleting=False,
        finalizer=True,
        deletion_policy="Delete",
        status=PROVISIONED,
        secret_name="orders-credentials",
        secret=OURS,
        rotate_annotation=None,
        admission=PLAN,
        held=None,
        now=NOW,
    )
    return replace(base, **kw)


def pending(name: str) -> DatabaseStatus:
    return PROVISIONED.model_copy(update={"pending_operation": PendingOperation(name=name, started_at=NOW)})  # type: ignore[arg-type]


NEW = DatabaseStatus()
ROWS: list[Any] = [
    # -- deleting --------------------------------------------------------------------------------
    ("deleting without our finalizer", dict(deleting=True, finalizer=False), Nothing()),
    ("Retain releases", dict(deleting=True, deletion_policy="Retain"), Release(retain=True)),
    (
        "deleted already: only release",
        dict(deleting=True, status=PROVISIONED.model_copy(update={"deleted_at": NOW})),
        Release(retain=False),
    ),
    (
        "never created: no delete call",
        dict(deleting=True, status=NEW, secret=SecretView()),
        Release(retain=False),
    ),
    ("provisioned: delete", dict(deleting=True), Delete(PLAN)),
    ("create's Secret without status: delete", dict(deleting=True, status=NEW), Delete(PLAN)),
    (
        "intent only: delete",
        dict(
            deleting=True,
            status=DatabaseStatus(pending_operation=PendingOperation(name="create", started_at=NOW)),
            secret=SecretView(),
        ),
        Delete(PLAN),
    ),
    ("delete blocked by admission", dict(deleting=True, admission=REFUSED), Blocked),
    ("delete waits for the view", dict(deleting=True, admission=NotReady("opening")), Wait(1.0, quiet=True)),
    # -- provisioning ----------------------------------------------------------------------------
    ("foreign Secret", dict(status=NEW, secret=SecretView(exists=True)), Blocked),
    ("new: create", dict(status=NEW, secret=SecretView()), Create(PLAN)),
    ("new, refused", dict(status=NEW, secret=SecretView(), admission=REFUSED), Blocked),
    (
        "new, view catching up",
        dict(status=NEW, secret=SecretView(), admission=NotReady("x")),
        Wait(1.0, quiet=True),
    ),
    ("create's Secret written, status not", dict(status=NEW), Adopt(1, "create")),
    (
        "create's credentials held",
        dict(status=NEW, secret=SecretView(), held=replace(HELD, operation="create", generation=1)),
        RepairSecret(PLAN, replace(HELD, operation="create", generation=1)),
    ),
    (
        "create outcome unknown: create again (idempotent contract)",
        dict(
            status=DatabaseStatus(pending_operation=PendingOperation(name="create", started_at=NOW)),
            secret=SecretView(),
        ),
        Create(PLAN),
    ),
    # -- provisioned -----------------------------------------------------------------------------
    ("all well", dict(), Nothing()),
    ("all well, scheduled", dict(admission=PLAN_HOURLY), Wait),
    (
        "interval elapsed",
        dict(admission=PLAN_HOURLY, now=NOW + timedelta(minutes=30)),
        Rotate(PLAN_HOURLY, ("the rotation interval elapsed",)),
    ),
    ("annotation true", dict(rotate_annotation="true"), Rotate(PLAN, ('rotate annotation "true"',))),
    (
        "annotation true honoured: remove it",
        dict(rotate_annotation="true", status=PROVISIONED.model_copy(update={"rotation_token": "true"})),
        RemoveAnnotation("true"),
    ),
    (
        "annotation token new",
        dict(rotate_annotation="v2"),
        Rotate(PLAN, ("rotate annotation has a new value",)),
    ),
    (
        "annotation token honoured",
        dict(rotate_annotation="v2", status=PROVISIONED.model_copy(update={"rotation_token": "v2"})),
        Nothing(),
    ),
    ("Secret deleted", dict(secret=SecretView()), Rotate(PLAN, ("Secret orders-credentials is missing",))),
    (
        "Secret edited",
        dict(secret=replace(OURS, drifted=True)),
        Rotate(PLAN, ("Secret orders-credentials was modified",)),
    ),
    ("Secret labels edited", dict(secret=replace(OURS, labels_wrong=True)), RepairLabels()),
    (
        "rotated credentials held: store before any rotate",
        dict(held=HELD, rotate_annotation="v3"),
        RepairSecret(PLAN, HELD),
    ),
    ("rotate's Secret written, status not", dict(secret=replace(OURS, generation=2)), Adopt(2, "rotate")),
    (
        "issued credentials lost with a restart",
        dict(
            secret=replace(OURS, generation=1),
            status=PROVISIONED.model_copy(update={"credential_generation": 2}),
        ),
        Rotate(PLAN, ("the last credentials issued could not be stored",)),
    ),
    (
        "rotate outcome unknown",
        dict(status=pending("rotate")),
        Rotate(PLAN, ("the outcome of the last rotation is unknown",)),
    ),
    ("rotation blocked keeps Ready=True", dict(rotate_annotation="true", admission=REFUSED), Blocked),
    ("refused but nothing to do: stays well", dict(admission=REFUSED), Nothing()),
    ("old Secret without a generation is trusted", dict(secret=replace(OURS, generation=None)), Nothing()),
]


@pytest.mark.parametrize(("case", "changes", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_decide(case: str, changes: dict[str, Any], expected: Any) -> None:
    step = decide(observed(**changes))
    if isinstance(expected, type):
        assert isinstance(step, expected), step
    else:
        assert step == expected


def test_blocked_rotation_keeps_ready_true_while_the_secret_works() -> None:
    step = decide(observed(rotate_annotation="true", admission=REFUSED))
    assert isinstance(step, Blocked)
    assert (step.reason, step.ready) == (reasons.ENDPOINT_NOT_FOUND, "True")
    assert step.message.startswith('cannot rotate (rotate annotation "true")')
    gone = decide(observed(secret=SecretView(), admission=REFUSED))
    assert isinstance(gone, Blocked)
    assert gone.ready == "False"
    # A rotate whose outcome is unknown may have replaced what the Secret holds: not Ready=True.
    unknown = decide(observed(status=pending("rotate"), admission=REFUSED))
    assert isinstance(unknown, Blocked)
    assert unknown.ready == "False"


def test_admission_failure_is_a_terminal_error() -> None:
    step = decide(observed(status=NEW, secret=SecretView(), admission=REFUSED))
    assert isinstance(step, Blocked)
    assert step.error
    assert step.retry_after is None


def test_decide_is_pure() -> None:
    o = observed(rotate_annotation="true")
    assert decide(o) == decide(o)
