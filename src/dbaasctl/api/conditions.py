"""Status conditions with the semantics of apimachinery's meta.SetStatusCondition.

Tools (kubectl wait, Argo CD, alerting rules) read `lastTransitionTime` as "how long has it been
like this", so it must move only when `status` flips, never on a reason or message update.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableSequence
from datetime import datetime
from typing import Literal

from dbaasctl.api.common import ApiModel, Timestamp
from dbaasctl.primitives.clock import utc_now

__all__ = [
    "Condition",
    "ConditionStatus",
    "find_condition",
    "is_condition_false",
    "is_condition_true",
    "remove_condition",
    "set_condition",
]

ConditionStatus = Literal["True", "False", "Unknown"]


def _now() -> datetime:
    # metav1.Time has second precision; truncating here keeps equality checks against
    # what comes back from the API server stable.
    return utc_now(whole_seconds=True)


class Condition(ApiModel):
    """metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: Timestamp
    observed_generation: int | None = None


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of that type, or None."""
    for cond in conditions:
        if cond.type == type_:
            return cond
    return None


def is_condition_true(conditions: Iterable[Condition], type_: str) -> bool:
    cond = find_condition(conditions, type_)
    return cond is not None and cond.status == "True"


def is_condition_false(conditions: Iterable[Condition], type_: str) -> bool:
    cond = find_condition(conditions, type_)
    return cond is not None and cond.status == "False"


def set_condition(
    conditions: MutableSequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Add or update a condition in place; True when anything changed.

    The transition time is `now` for a new condition or a status flip and is kept otherwise,
    exactly like meta.SetStatusCondition. Callers use the return value to skip no-op status
    writes, which would otherwise wake every watcher of the object.
    """
    existing = find_condition(conditions, type_)
    if existing is None:
        conditions.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now or _now(),
                observed_generation=observed_generation,
            )
        )
        return True
    changed = False
    if existing.status != status:
        existing.status = status
        existing.last_transition_time = now or _now()
        changed = True
    if existing.reason != reason:
        existing.reason = reason
        changed = True
    if existing.message != message:
        existing.message = message
        changed = True
    if existing.observed_generation != observed_generation:
        existing.observed_generation = observed_generation
        changed = True
    return changed


def remove_condition(conditions: MutableSequence[Condition], type_: str) -> bool:
    """Drop the condition of that type; True when one was removed."""
    for index, cond in enumerate(conditions):
        if cond.type == type_:
            del conditions[index]
            return True
    return False
