"""What one pass observed, and the one step `decide` picks from it.

Plain frozen dataclasses: `decide` is a pure function of an `Observed` and returns a `Step`, so the
table tests can build both by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from dbaasctl.api.database import DatabaseStatus, DeletionPolicy
from dbaasctl.controller.admission import AdmissionError, Plan
from dbaasctl.controller.database.schedule import next_rotation

__all__ = [
    "Adopt",
    "Blocked",
    "Create",
    "Delete",
    "Held",
    "NotReady",
    "Nothing",
    "Observed",
    "PreviousView",
    "Queued",
    "Release",
    "RemoveAnnotation",
    "RepairLabels",
    "RepairSecret",
    "Retire",
    "Retired",
    "Rotate",
    "SecretView",
    "Step",
    "Wait",
]

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class NotReady:
    """The operator's own view is catching up (an endpoint being opened); not the user's problem."""

    message: str


@dataclass(frozen=True)
class SecretView:
    """The Secret at the target name, as far as decide needs it."""

    exists: bool = False
    owned: bool = False
    drifted: bool = False
    labels_wrong: bool = False
    #: The credential generation stamped on it when we wrote it; None for a Secret written before
    #: generations were stamped (taken to hold what status says).
    generation: int | None = None
    #: Its data when owned and as we wrote it: what a rotation supersedes (`previous` in templates).
    data: dict[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PreviousView:
    """The Secret `<secretName>-previous`: the credentials a two-phase rotation superseded, kept until
    the retire procedure ended them. Only looked at while status says a retire is pending."""

    exists: bool = False
    data: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Held:
    """Credentials the DBMS issued that are not in the Secret yet, kept in memory until they are."""

    operation: Literal["create", "rotate"]
    generation: int
    result: dict[str, str] = field(repr=False)
    why: str = ""
    #: Two-phase rotation: the data of the Secret this rotation supersedes (written to the previous
    #: Secret before the new credentials), None for a cut-over.
    previous: dict[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Observed:
    key: str
    generation: int | None
    deleting: bool
    finalizer: bool
    deletion_policy: DeletionPolicy
    status: DatabaseStatus
    secret_name: str
    secret: SecretView
    #: The rotate annotation's value (either spelling), None when absent.
    rotate_annotation: str | None
    admission: Plan | AdmissionError | NotReady
    held: Held | None
    now: datetime
    previous: PreviousView = field(default_factory=PreviousView)
    #: The Database's uid (spreads its scheduled rotations) and when this operator process started.
    uid: str = ""
    started: datetime | None = None
    #: This process saw the retire procedure succeed and could not record it yet.
    retired: bool = False
    #: The operator rolls opted-in workloads after a rotation (`--rollout-workloads`).
    rollout_workloads: bool = False

    @property
    def plan(self) -> Plan | None:
        return self.admission if isinstance(self.admission, Plan) else None

    @property
    def interval(self) -> timedelta | None:
        plan = self.plan
        if plan is None or plan.klass.rotation is None:
            return None
        return plan.klass.rotation.interval or None

    @property
    def next_rotation(self) -> datetime | None:
        """When the scheduled rotation is due (see `schedule`), None without a schedule."""
        interval = self.interval
        plan = self.plan
        if not interval or plan is None or self.status.provisioned_at is None:
            return None
        rotation = plan.klass.rotation
        window = rotation.window.minutes() if rotation is not None and rotation.window else None
        last = self.status.last_rotation_time or self.status.provisioned_at
        return next_rotation(last, interval, self.uid, started=self.started, window=window)

    @property
    def retire_pending(self) -> bool:
        pending = self.status.pending_operation
        return self.status.previous_credentials_retire_at is not None or (
            pending is not None and pending.name == "retire"
        )


# -- steps ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    plan: Plan


@dataclass(frozen=True)
class Rotate:
    plan: Plan
    why: tuple[str, ...]


@dataclass(frozen=True)
class RepairSecret:
    """Write credentials held in memory (issued by the DBMS, not yet stored) to the Secret."""

    plan: Plan
    held: Held


@dataclass(frozen=True)
class Adopt:
    """The Secret holds a credential generation status has not recorded: record it, call nothing.
    `retire_at`: the previous credentials were kept for a two-phase rotation; retire them then."""

    generation: int
    operation: Literal["create", "rotate"]
    retire_at: datetime | None = None


@dataclass(frozen=True)
class RollOut:
    """A rotation is recorded but the workloads that opted in were not rolled to it yet."""

    generation: int


@dataclass(frozen=True)
class Retire:
    """End the credentials the last rotation superseded (`previous`: their Secret data)."""

    plan: Plan
    previous: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class Retired:
    """Record that the previous credentials are gone: `called` (retire succeeded, its record was cut
    short) or not (the class no longer declares retire: they are left to the DBA)."""

    called: bool


@dataclass(frozen=True)
class Queued:
    """A rotation was asked for during the grace period: it waits `seconds`, until retire is due."""

    seconds: float
    why: tuple[str, ...]
    ready: ConditionStatus = "True"


@dataclass(frozen=True)
class RepairLabels:
    pass


@dataclass(frozen=True)
class RemoveAnnotation:
    """The rotate annotation "true" was honoured (status.rotationToken says so); take it off."""

    annotation_value: str


@dataclass(frozen=True)
class Delete:
    plan: Plan


@dataclass(frozen=True)
class Release:
    """Let the object go: Retain releases the Secret, Delete removes it (the procedure already ran)."""

    retain: bool


@dataclass(frozen=True)
class Blocked:
    """Nothing can be done until something changes; reported as the Ready condition (and an Event).

    `error`: count the pass as a failed reconcile; `retry_after`: come back then (None: only a change
    to an input brings us back).
    """

    reason: str
    message: str
    ready: ConditionStatus = "False"
    error: bool = True
    retry_after: float | None = None


@dataclass(frozen=True)
class Wait:
    """All is well until `seconds` from now (the next scheduled rotation), or the view catches up."""

    seconds: float
    quiet: bool = False  # True: the operator's own view is catching up; leave the status alone


@dataclass(frozen=True)
class Nothing:
    """Nothing to do: the Database is gone, or all is well with no scheduled work."""


Step = (
    Create
    | Rotate
    | RepairSecret
    | Adopt
    | RollOut
    | RepairLabels
    | RemoveAnnotation
    | Retire
    | Retired
    | Queued
    | Delete
    | Release
    | Blocked
    | Wait
    | Nothing
)
