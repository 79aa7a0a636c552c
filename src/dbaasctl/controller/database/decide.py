"""`decide`: from what one pass observed (and the time in it) to exactly one step. Pure: no I/O.

The rules, in the order they apply, are the package docstring's table; the unit tests walk it row by row.
"""

from __future__ import annotations

from datetime import timedelta

from dbaasctl.controller import reasons
from dbaasctl.controller.admission import AdmissionError, Plan
from dbaasctl.controller.database.model import (
    Adopt,
    Blocked,
    Create,
    Delete,
    Nothing,
    NotReady,
    Observed,
    Queued,
    Release,
    RemoveAnnotation,
    RepairLabels,
    RepairSecret,
    Retire,
    Retired,
    RollOut,
    Rotate,
    Step,
    Wait,
)

__all__ = [
    "CONFLICT_RECHECK",
    "NOT_READY_RECHECK",
    "TRUE_TOKEN",
    "decide",
    "rotation_reasons",
    "secret_usable",
]

#: Requeue delay when a foreign Secret blocks us: its deletion is invisible to our label-selected watch.
CONFLICT_RECHECK = 5.0
#: Requeue delay while the operator's own configuration view catches up.
NOT_READY_RECHECK = 1.0
#: status.rotationToken after honouring the annotation value "true" (or ""), until the annotation is gone.
TRUE_TOKEN = "true"
#: A scheduled rotation this close to due is done now rather than after a sub-second requeue.
_EARLY = timedelta(milliseconds=500)
UNKNOWN_ROTATE = "the outcome of the last rotation is unknown"
NOT_STORED = "the last credentials issued could not be stored"


def decide(o: Observed) -> Step:
    if o.deleting:
        return _deleting(o)
    if o.secret.exists and not o.secret.owned:
        return Blocked(
            reasons.SECRET_CONFLICT,
            f"Secret {o.secret_name} exists and is not owned by this Database; it is never overwritten. "
            "Delete it, or create the Database under another name or spec.secretName",
            retry_after=CONFLICT_RECHECK,
        )
    if o.status.provisioned_at is None:
        return _provisioning(o)
    return _maintaining(o)


def secret_usable(o: Observed) -> bool:
    """Does the Secret hold the credentials the DBMS last issued (so Ready may be True)? Not while a
    rotate's outcome is unknown: it may have replaced them."""
    s = o.secret
    if not (s.exists and s.owned) or s.drifted or o.held is not None:
        return False
    pending = o.status.pending_operation
    if pending is not None and pending.name == "rotate":
        return False
    return s.generation is None or s.generation >= (o.status.credential_generation or 0)


def _deleting(o: Observed) -> Step:
    if not o.finalizer:
        return Nothing()
    if o.deletion_policy == "Retain":
        return Release(retain=True)
    if o.status.deleted_at is not None:
        return Release(retain=False)  # the delete procedure succeeded
    may_exist = (
        o.status.provisioned_at is not None
        or o.status.pending_operation is not None
        or o.held is not None
        or (o.secret.owned and o.secret.generation is not None)
    )
    if not may_exist:
        return Release(retain=False)  # create was never called, or it failed: nothing to delete
    if isinstance(o.admission, AdmissionError):
        return Blocked(
            reasons.DELETE_FAILED,
            f"cannot run the delete procedure: {o.admission.message}. Fix the configuration, or set "
            "spec.deletionPolicy to Retain to let the object go and keep the database",
        )
    if isinstance(o.admission, NotReady):
        return Wait(NOT_READY_RECHECK, quiet=True)
    return Delete(o.admission)


def _plan_or_step(o: Observed, why: str) -> Plan | Step:
    """The admission's plan, or the Blocked / Wait step when it gave none."""
    if isinstance(o.admission, AdmissionError):
        usable = o.status.provisioned_at is not None and secret_usable(o)
        message = f"cannot {why}: {o.admission.message}" if why else o.admission.message
        return Blocked(o.admission.reason, message, ready="True" if usable else "False")
    if isinstance(o.admission, NotReady):
        return Wait(NOT_READY_RECHECK, quiet=True)
    return o.admission


def _provisioning(o: Observed) -> Step:
    if o.held is not None:
        plan = _plan_or_step(o, "store the credentials create issued")
        return RepairSecret(plan, o.held) if isinstance(plan, Plan) else plan
    if o.secret.owned and o.secret.generation is not None:
        return Adopt(o.secret.generation, "create")
    # An intent without an outcome (the operator stopped, or the link broke, during the call) is not a
    # success we saw: create runs again (the contract asks create to be idempotent, as the samples are;
    # a create cut off half-way is completed by the re-run, which a rotate could not do).
    plan = _plan_or_step(o, "")
    return Create(plan) if isinstance(plan, Plan) else plan


def rotation_reasons(o: Observed) -> list[str]:
    why: list[str] = []
    annotation = o.rotate_annotation
    if annotation in ("true", ""):
        if o.status.rotation_token != TRUE_TOKEN:
            why.append(f'rotate annotation "{annotation}"')
    elif annotation and annotation != o.status.rotation_token:
        why.append("rotate annotation has a new value")
    s = o.secret
    if not s.exists:
        why.append(f"Secret {o.secret_name} is missing")
    elif s.drifted:
        why.append(f"Secret {o.secret_name} was modified")
    elif s.generation is not None and s.generation < (o.status.credential_generation or 0):
        why.append(NOT_STORED)
    if o.status.pending_operation is not None and o.status.pending_operation.name != "retire":
        why.append(UNKNOWN_ROTATE)
    due = o.next_rotation
    if due is not None and o.now >= due - _EARLY:
        why.append("the rotation interval elapsed")
    return why


def _maintaining(o: Observed) -> Step:
    status = o.status
    if o.held is not None:
        plan = _plan_or_step(o, "store the credentials rotate issued")
        return RepairSecret(plan, o.held) if isinstance(plan, Plan) else plan
    s = o.secret
    if s.owned and s.generation is not None and s.generation > (status.credential_generation or 0):
        grace = o.plan.klass.grace_period if o.plan is not None else None
        keep = grace is not None and o.previous.exists
        return Adopt(s.generation, "rotate", o.now + grace if keep and grace is not None else None)
    why = rotation_reasons(o)
    if _rollout_behind(o) and not why and not _retire_due(o):
        # Before retire ends the login the old pods use, never in its way (nor in a rotation's): a
        # roll-out that keeps failing must not keep old credentials alive or block new ones.
        return RollOut(status.credential_generation or 0)
    if o.retire_pending:
        step = _retiring(o, why)
        if step is not None:
            return step
    if why:
        plan = _plan_or_step(o, f"rotate ({'; '.join(why)})")
        return Rotate(plan, tuple(why)) if isinstance(plan, Plan) else plan
    if s.labels_wrong:
        return RepairLabels()
    if o.rotate_annotation in ("true", "") and status.rotation_token == TRUE_TOKEN:
        return RemoveAnnotation(o.rotate_annotation or "")
    retire_at = status.previous_credentials_retire_at
    if retire_at is not None:
        return Wait(max(1.0, (retire_at - o.now).total_seconds()))
    due = o.next_rotation
    if due is not None:
        return Wait(max(1.0, (due - o.now).total_seconds()))
    return Nothing()


def _rollout_behind(o: Observed) -> bool:
    rolled = o.status.rolled_out_generation
    return (
        o.rollout_workloads
        and rolled is not None
        and rolled < (o.status.credential_generation or 0)
        and secret_usable(o)
    )


def _retire_due(o: Observed) -> bool:
    if not o.retire_pending:
        return False
    pending = o.status.pending_operation
    retire_at = o.status.previous_credentials_retire_at or o.now
    return o.retired or (pending is not None and pending.name == "retire") or o.now >= retire_at - _EARLY


def _retiring(o: Observed, why: list[str]) -> Step | None:
    """Two-phase rotation, previous credentials pending: retire them when due; until then a rotation
    asked for waits (Queued), once, whatever asked for it. None: nothing to do about it yet."""
    pending = o.status.pending_operation
    intent = pending is not None and pending.name == "retire"
    if o.retired or (intent and not o.previous.exists):
        # The previous Secret is deleted only after retire succeeded: that success was cut short.
        return Retired(called=True)
    plan = _plan_or_step(o, "retire the previous credentials")
    if not isinstance(plan, Plan):
        return plan
    if plan.klass.operations.retire is None:
        return Retired(called=False)
    retire_at = o.status.previous_credentials_retire_at or o.now
    if intent or o.now >= retire_at - _EARLY:
        return Retire(plan, dict(o.previous.data))
    if why:
        seconds = max(1.0, (retire_at - o.now).total_seconds())
        return Queued(seconds, tuple(why), "True" if secret_usable(o) else "False")
    return None
