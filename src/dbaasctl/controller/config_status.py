"""The OperatorConfig's status as a pure function of what the registry and the last apply know.

Kept apart from the reconciler (I/O) so every rule is unit-tested: lastCheckTime moves at a bounded rate,
`Ready` says whether the configuration is in force and every endpoint usable, `Encrypted` says which
links break or weaken the TLS policy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from dbaasctl.api.conditions import Condition, set_condition
from dbaasctl.api.operatorconfig import EndpointHealth, OperatorConfigStatus
from dbaasctl.dbms import endpoints as dbms_endpoints
from dbaasctl.dbms.tls import TlsState, satisfies

#: lastCheckTime is republished when it is this much behind the live check: one status write per
#: interval at most, whatever the keepalive, instead of one per keepalive ping.
CHECK_TIME_REFRESH = dt.timedelta(seconds=30)


def set_conditions(
    status: OperatorConfigStatus, minimums: Mapping[str, str], error: str | None, generation: int | None
) -> None:
    """`Ready` and `Encrypted` from status.endpoints; `error`: why the last edit was not applied."""
    unhealthy = [e.name for e in status.endpoints if e.healthy is False]
    unchecked = [e.name for e in status.endpoints if e.healthy is None]
    conditions: list[Condition] = status.conditions
    _set_tls_condition(conditions, status.endpoints, minimums, generation)
    if error is not None:
        set_condition(
            conditions,
            "Ready",
            "False",
            "Invalid",
            f"not applied, the previous configuration stays in force: {error}",
            observed_generation=generation,
        )
    elif unhealthy:
        set_condition(
            conditions,
            "Ready",
            "False",
            "EndpointsUnavailable",
            f"applied; unavailable endpoints: {', '.join(unhealthy)}",
            observed_generation=generation,
        )
    else:
        set_condition(
            conditions,
            "Ready",
            "True",
            "Applied",
            "all endpoints available"
            if not unchecked
            else "applied; not checked yet (assumed available until a keepalive or an operation "
            f"says otherwise): {', '.join(unchecked)}",
            observed_generation=generation,
        )
    if error is None:
        status.observed_generation = generation


def health_entries(
    names: Sequence[str],
    problems: Mapping[str, str],
    live: Mapping[str, dbms_endpoints.EndpointHealth],
    previous: Sequence[EndpointHealth],
    now: dt.datetime,
) -> list[EndpointHealth]:
    """The status.endpoints list. lastCheckTime is the last check, but moves only when an entry
    changed or the published times are CHECK_TIME_REFRESH old, so a keepalive is not a status write."""
    before = {e.name: e for e in previous}
    out: list[EndpointHealth] = []
    for name in names:
        health = live.get(name)
        if name in problems:
            out.append(EndpointHealth(name=name, healthy=False, last_error=problems[name]))
        elif health is None or health.healthy is None:
            out.append(EndpointHealth(name=name, healthy=None, last_error="not checked yet"))
        else:
            out.append(
                EndpointHealth(
                    name=name,
                    healthy=health.healthy,
                    last_check_time=health.last_check,
                    last_transition_time=health.since,
                    last_error=None if health.healthy else (health.last_error or "unreachable"),
                    tls=health.tls.value,
                )
            )
    published = [e.last_check_time for e in previous if e.last_check_time is not None]
    due = not published or now - min(published) >= CHECK_TIME_REFRESH
    if not due:
        for i, entry in enumerate(out):
            old = before.get(entry.name)
            if old is not None and old.last_check_time is not None and entry.last_check_time is not None:
                same = entry.model_copy(update={"last_check_time": old.last_check_time})
                if same == old:
                    out[i] = same
    return out


def _set_tls_condition(
    conditions: list[Condition],
    entries: Sequence[EndpointHealth],
    minimums: Mapping[str, str],
    generation: int | None,
) -> None:
    """`Encrypted`: False while a link breaks its endpoint's TLS policy, or (a warning) is in plaintext."""
    plaintext = [e.name for e in entries if e.tls == "plaintext"]
    unverified = [e.name for e in entries if e.tls == "encrypted"]
    refused = [
        f"{e.name} ({e.tls or 'unknown'}, needs {minimums[e.name]})"
        for e in entries
        if e.name in minimums
        and e.tls is not None
        and (e.tls != "unknown" or minimums[e.name] != "plaintext")
        and not satisfies(TlsState(e.tls), TlsState(minimums[e.name]))
    ]
    if refused:
        set_condition(
            conditions,
            "Encrypted",
            "False",
            "TlsPolicyRefused",
            f"endpoints not used, their link is weaker than spec.tls.minimum: {', '.join(refused)}",
            observed_generation=generation,
        )
    elif plaintext:
        set_condition(
            conditions,
            "Encrypted",
            "False",
            "PlaintextEndpoints",
            f"DBMS links without TLS (the login and issued credentials cross them in clear): "
            f"{', '.join(plaintext)}; enable TLS in the DSN and set spec.tls.minimum",
            observed_generation=generation,
        )
    else:
        note = f"; certificate not verified: {', '.join(unverified)}" if unverified else ""
        set_condition(
            conditions,
            "Encrypted",
            "True",
            "NoPlaintextEndpoints",
            f"no DBMS link was seen in plaintext{note}",
            observed_generation=generation,
        )
