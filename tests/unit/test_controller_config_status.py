"""OperatorConfig status.endpoints: lastCheckTime follows the checks at a bounded refresh interval,
lastTransitionTime follows changes, and an endpoint never checked is not reported as unhealthy."""

from __future__ import annotations

import datetime as dt

from dbaasctl.api.operatorconfig import EndpointHealth as Entry
from dbaasctl.controller.config_status import CHECK_TIME_REFRESH, health_entries
from dbaasctl.dbms.endpoints import EndpointHealth as Live
from dbaasctl.dbms.tls import TlsState

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _live(checked: dt.datetime, *, healthy: bool = True, since: dt.datetime = T0) -> Live:
    return Live(endpoint="pg", healthy=healthy, last_check=checked, since=since, tls=TlsState.VERIFIED)


def test_a_check_within_the_refresh_interval_keeps_the_published_entry() -> None:
    first = health_entries(["pg"], {}, {"pg": _live(T0)}, [], T0)
    assert first[0].last_check_time == T0
    assert first[0].last_transition_time == T0
    assert first[0].tls == "verified"
    soon = T0 + CHECK_TIME_REFRESH / 2
    again = health_entries(["pg"], {}, {"pg": _live(soon)}, first, soon)
    assert again == first  # nothing to write for a keepalive


def test_last_check_time_moves_once_the_refresh_interval_passed() -> None:
    first = health_entries(["pg"], {}, {"pg": _live(T0)}, [], T0)
    later = T0 + CHECK_TIME_REFRESH + dt.timedelta(seconds=1)
    moved = health_entries(["pg"], {}, {"pg": _live(later)}, first, later)
    assert moved[0].last_check_time == later  # the last check, not the last transition
    assert moved[0].last_transition_time == T0
    assert moved[0].healthy is True


def test_a_change_is_published_at_once() -> None:
    first = health_entries(["pg"], {}, {"pg": _live(T0)}, [], T0)
    soon = T0 + dt.timedelta(seconds=1)
    down = health_entries(["pg"], {}, {"pg": _live(soon, healthy=False, since=soon)}, first, soon)
    assert down[0].healthy is False
    assert down[0].last_check_time == soon
    assert down[0].last_transition_time == soon


def test_never_checked_is_unknown_not_unhealthy() -> None:
    never = Live(endpoint="pg", healthy=None)
    entries = health_entries(["pg", "gone"], {"gone": "DSN Secret x not found"}, {"pg": never}, [], T0)
    assert entries == [
        Entry(name="pg", healthy=None, last_error="not checked yet"),
        Entry(name="gone", healthy=False, last_error="DSN Secret x not found"),
    ]
