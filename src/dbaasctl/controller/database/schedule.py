"""When a scheduled rotation is due: pure functions of the last rotation, the class's schedule, the
Database's uid and the operator's start time.

Without spreading, every Database of a class created in one batch (a GitOps sync, a migration) rotates
in the same second forever, and after an outage every overdue Database rotates the moment the operator
starts: a thundering herd on the DBMS and on every application restarting at once. So:

* each Database rotates a little *earlier* than the interval (never later: "rotate at least every
  30 days" still holds), by a fraction of the interval fixed by its uid (at most a tenth, at most an
  hour), so a batch drifts apart;
* a rotation overdue when the operator starts is spread over the first minutes (a tenth of the
  interval, at most ten), again by uid;
* a class `rotation.window` (daily, UTC) moves a due rotation to the next time inside the window,
  spread across it by uid. Only scheduled rotations wait for the window; a rotation asked for by
  annotation or a lost Secret does not.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

__all__ = [
    "MAX_JITTER",
    "MAX_START_SPREAD",
    "fraction",
    "jitter",
    "next_rotation",
    "start_not_before",
    "within_window",
]

#: The most a Database rotates before its interval is up.
MAX_JITTER = timedelta(hours=1)
#: Overdue rotations at operator start are spread over at most this long.
MAX_START_SPREAD = timedelta(minutes=10)
_DAY = 24 * 60


def fraction(uid: str, purpose: str) -> float:
    """A number in [0, 1) fixed by the uid, independent for each purpose (so the offsets of one
    Database are not correlated)."""
    digest = hashlib.sha256(f"{purpose}\0{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def jitter(interval: timedelta, uid: str) -> timedelta:
    """How much earlier than `interval` this Database rotates: [0, min(interval / 10, 1h))."""
    return min(interval / 10, MAX_JITTER) * fraction(uid, "interval")


def start_not_before(started: datetime, interval: timedelta, uid: str) -> datetime:
    """The earliest scheduled rotation after the operator started: [0, min(interval / 10, 10m)) in."""
    return started + min(interval / 10, MAX_START_SPREAD) * fraction(uid, "start")


def within_window(when: datetime, window: tuple[int, int], uid: str) -> datetime:
    """`when` if it lies inside the daily window (start, end minutes after midnight UTC; end before
    start spans midnight), else a time in the next window, spread across it by uid."""
    start, end = window
    length = (end - start) % _DAY
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    minute = (when - midnight) / timedelta(minutes=1)
    if (minute - start) % _DAY < length:
        return when
    opening = midnight + timedelta(minutes=start)
    if opening <= when:
        opening += timedelta(days=1)
    return opening + timedelta(minutes=length) * fraction(uid, "window")


def next_rotation(
    last: datetime,
    interval: timedelta,
    uid: str,
    *,
    started: datetime | None = None,
    window: tuple[int, int] | None = None,
) -> datetime:
    """When the scheduled rotation after `last` (the last rotation, or creation) is due."""
    due = last + interval - jitter(interval, uid)
    if started is not None:
        due = max(due, start_not_before(started, interval, uid))
    if window is not None:
        due = within_window(due, window, uid)
    return due
