"""Scheduled rotation without thundering herds: the pure schedule functions, table by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbaasctl.api.databaseclass import RotationWindow
from dbaasctl.controller.database.schedule import (
    MAX_JITTER,
    MAX_START_SPREAD,
    fraction,
    jitter,
    next_rotation,
    start_not_before,
    within_window,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(500)]


def test_fraction_is_stable_in_range_and_independent_per_purpose() -> None:
    values = [fraction(uid, "interval") for uid in UIDS]
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == [fraction(uid, "interval") for uid in UIDS]  # derived, not random
    assert values != [fraction(uid, "start") for uid in UIDS]
    # Spread over the whole range: every tenth of it is used by a batch of 500.
    assert {int(v * 10) for v in values} == set(range(10))


@pytest.mark.parametrize(
    ("interval", "bound"),
    [
        (timedelta(seconds=2), timedelta(seconds=0.2)),
        (timedelta(minutes=30), timedelta(minutes=3)),
        (timedelta(days=30), MAX_JITTER),
    ],
)
def test_jitter_is_a_bounded_fraction_and_only_ever_earlier(interval: timedelta, bound: timedelta) -> None:
    offsets = [jitter(interval, uid) for uid in UIDS]
    assert all(timedelta(0) <= j < bound for j in offsets)
    assert max(offsets) > bound * 0.9  # the span is used
    for uid in UIDS[:20]:
        due = next_rotation(T0, interval, uid)
        assert T0 + interval - bound < due <= T0 + interval  # never later than the interval


def test_a_batch_created_together_does_not_rotate_together() -> None:
    interval = timedelta(days=30)
    dues = sorted(next_rotation(T0, interval, uid) for uid in UIDS)
    per_minute: dict[datetime, int] = {}
    for due in dues:
        minute = due.replace(second=0, microsecond=0)
        per_minute[minute] = per_minute.get(minute, 0) + 1
    assert max(per_minute.values()) <= 25  # 500 Databases over an hour: no herd
    assert dues[-1] - dues[0] > timedelta(minutes=50)


def test_overdue_rotations_are_spread_after_operator_start() -> None:
    interval = timedelta(days=30)
    started = T0 + timedelta(days=90)  # the operator was down: everything is overdue
    dues = [next_rotation(T0, interval, uid, started=started) for uid in UIDS]
    assert all(started <= d < started + MAX_START_SPREAD for d in dues)
    assert sum(1 for d in dues if d < started + timedelta(seconds=1)) <= 5  # never all at start
    per_second: dict[datetime, int] = {}
    for d in dues:
        per_second[d.replace(microsecond=0)] = per_second.get(d.replace(microsecond=0), 0) + 1
    assert max(per_second.values()) <= 6  # 500 over ten minutes: about one a second
    # Not overdue: the start spread changes nothing.
    uid = UIDS[0]
    assert next_rotation(T0, interval, uid, started=T0) == next_rotation(T0, interval, uid)
    assert start_not_before(started, timedelta(seconds=10), uid) < started + timedelta(seconds=1)


WINDOW = RotationWindow(start="02:00", end="05:00").minutes()
OVERNIGHT = RotationWindow(start="23:00", end="01:00").minutes()


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "window", "earliest", "latest"),
    [
        ("inside", WINDOW, _at(1, 3), _at(1, 3)),
        ("at the opening", WINDOW, _at(1, 2), _at(1, 2)),
        ("before: same day", WINDOW, _at(1, 2), _at(1, 5)),
        ("after: next day", WINDOW, _at(2, 2), _at(2, 5)),
        ("at the end: next day", WINDOW, _at(2, 2), _at(2, 5)),
        ("overnight, inside before midnight", OVERNIGHT, _at(1, 23, 30), _at(1, 23, 30)),
        ("overnight, inside after midnight", OVERNIGHT, _at(2, 0, 30), _at(2, 0, 30)),
        ("overnight, outside", OVERNIGHT, _at(1, 23), _at(2, 1)),
    ],
)
def test_within_window(when: str, window: tuple[int, int], earliest: datetime, latest: datetime) -> None:
    start = {
        "inside": _at(1, 3),
        "at the opening": _at(1, 2),
        "before: same day": _at(1, 1),
        "after: next day": _at(1, 6),
        "at the end: next day": _at(1, 5),
        "overnight, inside before midnight": _at(1, 23, 30),
        "overnight, inside after midnight": _at(2, 0, 30),
        "overnight, outside": _at(1, 12),
    }[when]
    for uid in UIDS[:50]:
        moved = within_window(start, window, uid)
        assert earliest <= moved <= latest, (when, uid, moved)


def test_a_window_spreads_a_batch_across_it() -> None:
    dues = [within_window(_at(1, 12), WINDOW, uid) for uid in UIDS]
    assert all(_at(2, 2) <= d < _at(2, 5) for d in dues)
    assert len({d.replace(second=0, microsecond=0) for d in dues}) > 100


def test_next_rotation_applies_jitter_start_spread_and_window_in_order() -> None:
    uid = UIDS[7]
    due = next_rotation(_at(1, 12), timedelta(days=1), uid, window=WINDOW)
    assert _at(3, 2) <= due < _at(3, 5)  # due the next day before noon: waits for the window after it
    inside = next_rotation(_at(1, 3), timedelta(days=1), uid, window=WINDOW)
    assert inside == _at(2, 3) - jitter(timedelta(days=1), uid)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [("2:00", "05:00", "HH:MM"), ("02:00", "24:00", "HH:MM"), ("03:00", "03:00", "must differ")],
)
def test_window_validation(start: str, end: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RotationWindow(start=start, end=end)
