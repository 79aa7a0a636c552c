"""Clocks: UTC wall time in the two RFC 3339 forms the Kubernetes API uses (Time and MicroTime), and the
monotonic clock that durations and deadlines are measured on.

Every timestamp we write to the API server or to the DBMS comes from here, so they all agree on the
zone (UTC, never local) and on the precision each field accepts. Durations use the running event
loop's clock, so timers, timeouts and measurements agree, and tests can run them on virtual time.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import time


def loop_time() -> float:
    """The running loop's monotonic clock; `time.monotonic()` (the same clock) outside a loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def utc_now(*, whole_seconds: bool = False) -> _dt.datetime:
    """An aware UTC datetime; `whole_seconds` matches what metav1.Time fields keep after a round trip."""
    now = _dt.datetime.now(_dt.UTC)
    return now.replace(microsecond=0) if whole_seconds else now


def rfc3339(when: _dt.datetime | None = None) -> str:
    """metav1.Time: second precision, `Z` suffix (fractions would be dropped by the server anyway)."""
    ts = (when or utc_now()).astimezone(_dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(when: _dt.datetime | None = None) -> str:
    """metav1.MicroTime: exactly 6 fractional digits, as Lease and events.k8s.io fields require."""
    ts = (when or utc_now()).astimezone(_dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
