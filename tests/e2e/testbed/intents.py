"""Exactly once per intent, counted on the server.

An *intent* is one thing a user asked for: a Database to exist (one create per incarnation: the calls
since its creationTimestamp, so a re-used name starts afresh), one rotation (a new value of the rotate
annotation, a missing Secret, an elapsed interval: each one that succeeded raised
`status.credentialGeneration` by one) and its deletion (one delete per incarnation that is gone).

Calls are the audit wrappers' committed rows (tests/e2e/data/audit-*.sql): a call rolled back on the
server (connection cut before the commit) changed nothing and is not counted. The rules, for every
Database the judge sees:

- created and recorded (`status.provisionedAt` set): exactly one create call;
- `credentialGeneration` g recorded: exactly g - 1 rotate calls (a rotate whose record was lost and that
  ran again shows up as one more call than generations);
- a scenario may name the exact calls it expects per Database (`expected_calls`), including deletes of
  Databases that are gone.

Each call beyond what an intent allows is a *repeat*: counted in the figures and reported as a violation.
A call the procedure recognised by its idempotency key (`{{ operation.id }}`) as one that already took
effect changed nothing: it is a *replay*, counted apart and never a repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["IntentCount", "count_intents"]

#: creationTimestamp has one-second precision; the server stamps a call's start with microseconds.
BORN_SLACK = 1.0


@dataclass
class IntentCount:
    violations: list[tuple[str, str, str]] = field(default_factory=list)  # (ns/name, operation, detail)
    intents: int = 0
    repeats: int = 0
    replays: int = 0
    #: Committed calls per judged Database and operation: "ns/name" -> {"create": 1, ...}.
    calls: dict[str, dict[str, int]] = field(default_factory=dict)


def _epoch(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def count_intents(
    calls: Iterable[Any],
    by_key: Mapping[str, Mapping[str, Any]],
    endpoints: Iterable[str],
    expected: Mapping[str, Mapping[str, int]],
) -> IntentCount:
    """Judge the committed calls of one server against the intents of the Databases it serves.

    `calls` are `invariants.Call`s; `endpoints` the endpoint names behind this server; `expected` maps
    "ns/name" to exact per-operation counts (only keys served by this server's calls are judged).
    """
    out = IntentCount()
    mine = set(endpoints)
    judged: set[tuple[str, str]] = set()  # (ns/name, op) already held to the rules
    history: dict[str, list[Any]] = {}
    replayed: dict[str, list[Any]] = {}
    for call in calls:
        if getattr(call, "replayed", False):
            replayed.setdefault(f"{call.namespace}/{call.name}", []).append(call)
            continue
        history.setdefault(f"{call.namespace}/{call.name}", []).append(call)
    for key, db in sorted(by_key.items()):
        status = db.get("status") or {}
        if (status.get("endpoint") or (db.get("spec") or {}).get("endpoint")) not in mine:
            continue
        born = _epoch(db["metadata"].get("creationTimestamp")) - BORN_SLACK
        own = [c for c in history.get(key, []) if c.started_at >= born]
        out.replays += sum(c.started_at >= born for c in replayed.get(key, []))
        counts = {op: sum(c.op == op for c in own) for op in ("create", "rotate", "delete")}
        if status.get("provisionedAt"):
            out.intents += 1
            judged.add((key, "create"))
            _exact(out, key, "create", counts["create"], 1, "per Database")
        generation = int(status.get("credentialGeneration") or 0)
        if generation >= 1:
            out.intents += generation - 1
            judged.add((key, "rotate"))
            _exact(
                out, key, "rotate", counts["rotate"], generation - 1, f"for credentialGeneration {generation}"
            )
    for key, wanted in sorted(expected.items()):
        gone = key not in by_key
        db = by_key.get(key) or {}
        born = 0.0 if gone else _epoch(db["metadata"].get("creationTimestamp")) - BORN_SLACK
        own = [c for c in history.get(key, []) if c.started_at >= born]
        if not gone:
            served = (db.get("status") or {}).get("endpoint") or (db.get("spec") or {}).get("endpoint")
            if served not in mine:
                continue
        elif not own:
            continue  # a gone Database whose calls went to another server
        for op, n in sorted(wanted.items()):
            if (key, op) in judged:
                got = sum(c.op == op for c in own)
                if got != n and not any(v[0] == key and v[1] == op for v in out.violations):
                    _exact(out, key, op, got, n, "by the scenario", count_repeats=False)
                continue
            # create and rotate of a live Database are already counted as intents by the rules above.
            fresh = gone or op == "delete"
            out.intents += n if fresh else 0
            got = sum(c.op == op for c in own)
            _exact(out, key, op, got, n, "by the scenario", count_repeats=fresh)
    return out


def _exact(
    out: IntentCount, key: str, op: str, got: int, want: int, why: str, *, count_repeats: bool = True
) -> None:
    out.calls.setdefault(key, {})[op] = got
    if got == want:
        return
    if got > want and count_repeats:
        out.repeats += got - want
    out.violations.append((key, op, f"{op} ran {got} time(s) on the server, expected {want} {why}"))
