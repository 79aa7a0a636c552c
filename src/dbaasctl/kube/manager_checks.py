"""The probe checks every manager comes with: informers alive and synced, the event loop, the Lease.

They decide restarts and traffic, so they are kept in one place: liveness fails only for a dead informer,
a stalled event loop or a leader whose renewals stopped (never for an unreachable API server, which
would turn an outage into a restart storm); readiness waits for every cache to sync, not for leadership.
"""

from __future__ import annotations

from collections.abc import Sequence

from dbaasctl.kube.cache import Informer
from dbaasctl.kube.leader import LeaderElector
from dbaasctl.observability.http import HealthChecks, LoopMonitor


def install_default_checks(
    liveness: HealthChecks,
    readiness: HealthChecks,
    *,
    loop_monitor: LoopMonitor,
    informers: Sequence[Informer],
    elector: LeaderElector | None,
    leader_slack: float,
) -> None:
    """Add the built-in checks; `informers` is read at every probe, so informers added later count."""
    liveness.add("ping", lambda: None)
    liveness.add("event-loop", loop_monitor.check)
    liveness.add("informers", lambda: informers_alive(informers))
    if elector is not None:
        liveness.add("leader-election", lambda: elector.check_renewing(leader_slack))
    readiness.add("ping", lambda: None)
    readiness.add("informers-synced", lambda: informers_synced(informers))


def informers_alive(informers: Sequence[Informer]) -> str | None:
    dead = [f"{i.name}: {reason}" for i in informers if (reason := i.check_alive()) is not None]
    return "; ".join(dead) or None


def informers_synced(informers: Sequence[Informer]) -> str | None:
    pending = [i.name for i in informers if not i.has_synced]
    return f"not synced: {', '.join(pending)}" if pending else None
