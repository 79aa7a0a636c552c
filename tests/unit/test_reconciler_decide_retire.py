"""`decide` rows of two-phase rotation and of the spread schedule: observed state in, one step out."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from reconciler_harness import database_class
from test_reconciler_decide import NOW, PLAN, PLAN_HOURLY, PROVISIONED, REFUSED, _plan, observed

from dbaasctl.api.database import PendingOperation
from dbaasctl.controller.admission import Plan
from dbaasctl.controller.database import decide
from dbaasctl.controller.database.model import (
    Adopt,
    Blocked,
    PreviousView,
    Queued,
    Retire,
    Retired,
    RollOut,
    Rotate,
    SecretView,
    Wait,
)


def _plan_two_phase() -> Plan:
    plan = _plan()
    klass = plan.klass.model_validate(database_class(retire=True, grace="10m")["spec"])
    return replace(plan, klass=klass)


TWO = _plan_two_phase()
OLD = {"username": "orders", "password": "old"}
KEPT = PreviousView(exists=True, data=OLD)
GRACE = PROVISIONED.model_copy(
    update={"credential_generation": 2, "previous_credentials_retire_at": NOW + timedelta(minutes=4)}
)
DUE = GRACE.model_copy(update={"previous_credentials_retire_at": NOW - timedelta(seconds=1)})
INTENT = GRACE.model_copy(
    update={"pending_operation": PendingOperation(name="retire", started_at=NOW - timedelta(seconds=5))}
)
TWO_SECRET = SecretView(exists=True, owned=True, generation=2)

ROWS: list[Any] = [
    ("in grace, all well: wait for retire", dict(status=GRACE, previous=KEPT), Wait(240.0)),
    ("due: retire with the previous data", dict(status=DUE, previous=KEPT), Retire(TWO, OLD)),
    ("intent, previous still there: retire again", dict(status=INTENT, previous=KEPT), Retire(TWO, OLD)),
    ("intent, previous gone: retire ran", dict(status=INTENT, previous=PreviousView()), Retired(called=True)),
    ("seen succeeding in this process", dict(status=DUE, previous=KEPT, retired=True), Retired(called=True)),
    ("class dropped retire", dict(status=DUE, previous=KEPT, admission=PLAN), Retired(called=False)),
    ("retire blocked by admission", dict(status=DUE, previous=KEPT, admission=REFUSED), Blocked),
    (
        "annotation in grace: queued",
        dict(status=GRACE, previous=KEPT, rotate_annotation="v9"),
        Queued(240.0, ("rotate annotation has a new value",), "True"),
    ),
    (
        "Secret deleted in grace: queued, not ready",
        dict(status=GRACE, previous=KEPT, secret=SecretView()),
        Queued(240.0, ("Secret orders-credentials is missing",), "False"),
    ),
    (
        "annotation when due: retire first",
        dict(status=DUE, previous=KEPT, rotate_annotation="v9"),
        Retire(TWO, OLD),
    ),
    (
        "adopted generation with a previous Secret: retire scheduled",
        dict(status=PROVISIONED, secret=TWO_SECRET, previous=KEPT),
        Adopt(2, "rotate", NOW + timedelta(minutes=10)),
    ),
    (
        "adopted generation without one: cut-over",
        dict(status=PROVISIONED, secret=TWO_SECRET),
        Adopt(2, "rotate", None),
    ),
]


OWED = {"rolled_out_generation": 1}
ROLLOUT_ROWS: list[Any] = [
    (
        "roll-out owed, in grace: roll out",
        dict(status=GRACE.model_copy(update=OWED), previous=KEPT),
        RollOut(2),
    ),
    (
        "roll-out owed, retire due: retire first",
        dict(status=DUE.model_copy(update=OWED), previous=KEPT),
        Retire(TWO, OLD),
    ),
    (
        "roll-out owed, a rotation asked for: the rotation first",
        dict(
            status=PROVISIONED.model_copy(update={**OWED, "credential_generation": 2}), rotate_annotation="v9"
        ),
        Rotate(TWO, ("rotate annotation has a new value",)),
    ),
    (
        "roll-out owed, Secret behind status: not before the Secret is repaired",
        dict(
            status=GRACE.model_copy(update=OWED),
            previous=KEPT,
            secret=SecretView(exists=True, owned=True, generation=1),
        ),
        Queued,
    ),
    (
        "rolled out: wait for retire",
        dict(status=GRACE.model_copy(update={"rolled_out_generation": 2}), previous=KEPT),
        Wait(240.0),
    ),
    ("never rolled (Database from before roll-out was on)", dict(status=GRACE, previous=KEPT), Wait(240.0)),
    (
        "roll-out off: nothing owed",
        dict(status=GRACE.model_copy(update=OWED), previous=KEPT, rollout_workloads=False),
        Wait(240.0),
    ),
]


@pytest.mark.parametrize(("case", "changes", "expected"), ROLLOUT_ROWS, ids=[r[0] for r in ROLLOUT_ROWS])
def test_decide_roll_out(case: str, changes: dict[str, Any], expected: Any) -> None:
    changes = {"admission": TWO, "secret": TWO_SECRET, "rollout_workloads": True, **changes}
    step = decide(observed(**changes))
    if isinstance(expected, type):
        assert isinstance(step, expected), step
    else:
        assert step == expected


@pytest.mark.parametrize(("case", "changes", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_decide_two_phase(case: str, changes: dict[str, Any], expected: Any) -> None:
    changes = {"admission": TWO, "secret": TWO_SECRET, **changes}
    step = decide(observed(**changes))
    if isinstance(expected, type):
        assert isinstance(step, expected), step
    else:
        assert step == expected


def test_overdue_at_operator_start_waits_its_turn() -> None:
    overdue = PROVISIONED.model_copy(update={"provisioned_at": NOW - timedelta(days=3)})
    uids = [f"uid-{i}" for i in range(50)]
    steps = [decide(observed(admission=PLAN_HOURLY, status=overdue, uid=u, started=NOW)) for u in uids]
    waiting = [s for s in steps if isinstance(s, Wait)]
    assert len(waiting) >= 45  # not all at start: spread over the first six minutes
    assert all(s.seconds <= 6 * 60 for s in waiting)
    later = [
        decide(observed(admission=PLAN_HOURLY, status=overdue, uid=u, started=NOW - timedelta(hours=1)))
        for u in uids
    ]
    assert all(isinstance(s, Rotate) for s in later)  # a long-running operator rotates overdue ones
