"""Observe: the Database (cache, or the fresher copy a write returned), our Secret, admission, memory."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from dbaasctl.api.conditions import find_condition, set_condition
from dbaasctl.api.database import (
    FINALIZER,
    LEGACY_ROTATE_ANNOTATION,
    ROTATE_ANNOTATION,
    Database,
    DatabaseStatus,
)
from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Admission, AdmissionError, NotReadyError, Plan
from dbaasctl.controller.database.model import Held, NotReady, Observed, PreviousView, SecretView
from dbaasctl.controller.database.previous import previous_view_data, superseded_data
from dbaasctl.controller.secrets import inspect_secret
from dbaasctl.kube.resources import JsonDict
from dbaasctl.templates.offloop import Renders

__all__ = ["Pass", "copy_status", "observe", "rotate_annotation"]


def copy_status(status: DatabaseStatus) -> DatabaseStatus:
    """A deep copy for a quarter of `model_copy(deep=True)`'s CPU (which walks the model with
    `copy.deepcopy` in Python); taken several times per pass, so it shows in the CPU per Database."""
    return DatabaseStatus.model_validate(status.model_dump())


class Pass:
    """One reconcile of one Database: the freshest copy we know and the status we are building."""

    def __init__(self, raw: JsonDict) -> None:
        self.adopt(raw)  # sets self.status to a copy of the server's
        self.gone = False  # the Database is gone (finalizer removed, or 404): report nothing more
        self.renders = Renders()  # templates render at most once per pass

    def adopt(self, raw: JsonDict, *, keep_status: bool = False) -> None:
        """Take a newer copy of the object as the base of later writes (and of the status, unless kept)."""
        self.raw = raw
        self.db = Database.model_validate(raw)
        self.server_status = self.db.status.to_api()
        if not keep_status:
            self.status = copy_status(self.db.status)

    @property
    def key(self) -> str:
        return self.db.key

    @property
    def namespace(self) -> str:
        return self.db.metadata.namespace or ""

    @property
    def name(self) -> str:
        return self.db.metadata.name

    @property
    def secret_name(self) -> str:
        return self.status.secret_name or self.db.secret_name

    def set_ready(self, status: Literal["True", "False", "Unknown"], reason: str, message: str) -> None:
        set_condition(
            self.status.conditions,
            reasons.COND_READY,
            status,
            reason,
            message,
            observed_generation=self.db.metadata.generation,
        )

    def ready(self) -> tuple[str, str] | None:
        cond = find_condition(self.status.conditions, reasons.COND_READY)
        return (cond.status, cond.reason) if cond is not None else None


def rotate_annotation(db: Database) -> tuple[str | None, str | None]:
    """(value, the annotation key it was found under); ours wins over the reference operator's."""
    annotations = db.metadata.annotations
    for key in (ROTATE_ANNOTATION, LEGACY_ROTATE_ANNOTATION):
        if key in annotations:
            return annotations[key], key
    return None, None


async def observe(
    p: Pass,
    secret: JsonDict | None,
    admission: Admission,
    held: Held | None,
    now: datetime,
    previous_secret: JsonDict | None = None,
    retired: bool = False,
    started: datetime | None = None,
    rollout_workloads: bool = False,
) -> Observed:
    db = p.db
    state = inspect_secret(secret, p.raw)
    view = SecretView(
        exists=state.exists,
        owned=state.owned,
        drifted=state.drifted,
        labels_wrong=state.needs_metadata_repair,
        generation=state.generation,
        data=superseded_data(secret, p.raw) or None,
    )
    previous_data = previous_view_data(previous_secret, p.raw)
    previous = PreviousView(exists=previous_data is not None, data=previous_data or {})
    # Create enforces every admission rule; a Database that may already exist is never stranded by a
    # rule tightened since (see controller/admission).
    strict = p.status.provisioned_at is None and p.status.pending_operation is None
    admitted: Plan | AdmissionError | NotReady
    try:
        plan = replace(admission.admit(db, strict=strict), renders=p.renders)
        if strict:
            await plan.check_secret_format()
            await plan.operation("create")  # a template error must stop us before the DBMS
        admitted = plan
    except AdmissionError as exc:
        admitted = exc
    except NotReadyError as exc:
        admitted = NotReady(str(exc))
    value, _ = rotate_annotation(db)
    return Observed(
        key=p.key,
        generation=db.metadata.generation,
        deleting=db.metadata.deletion_timestamp is not None,
        finalizer=FINALIZER in db.metadata.finalizers,
        deletion_policy=db.spec.deletion_policy,
        status=copy_status(p.status),
        secret_name=p.secret_name,
        secret=view,
        rotate_annotation=value,
        admission=admitted,
        held=held,
        now=now,
        previous=previous,
        retired=retired,
        rollout_workloads=rollout_workloads,
        uid=db.metadata.uid or "",
        started=started,
    )
