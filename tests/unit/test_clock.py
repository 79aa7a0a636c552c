"""The UTC/RFC 3339 helpers write what the API server's Time and MicroTime fields accept."""

from __future__ import annotations

import datetime as dt
import re

from dbaasctl.primitives.clock import micro_time, rfc3339, utc_now

PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def test_micro_time_has_six_fractional_digits_in_utc() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=PLUS_TWO)
    assert micro_time(when) == "2026-01-02T01:04:05.000120Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", micro_time())


def test_rfc3339_is_whole_seconds_in_utc() -> None:
    assert rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=PLUS_TWO)) == "2026-01-02T01:04:05Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rfc3339())


def test_utc_now_is_aware_utc_and_can_drop_fractions() -> None:
    assert utc_now().tzinfo is dt.UTC
    assert utc_now(whole_seconds=True).microsecond == 0
