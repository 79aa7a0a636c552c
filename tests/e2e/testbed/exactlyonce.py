"""Pieces of the exactly-once scenarios: the operator behind proxies, calls in flight, scoped judging.

Every scenario of tests/e2e/test_reliability_exactlyonce.py needs the same few things: a kubeconfig
that sends the operator through the API proxy, a DSN through a DBMS proxy, a way to see on the server
that a slow procedure is running right now (so an edit or a fault lands inside the call, not near it),
and a judge that looks at the scenario's own Databases only (earlier scenarios share the servers).

Each judged scenario adds rows to the fault matrix in build/reliability/last-run.json: operation x
injection point x failure kind, with the intents judged and the repeats counted on the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from testbed.invariants import CheckReport, InvariantChecker, MariaDBView, PostgresView, ServerView
from testbed.reliability import RESULTS, World, record_figures
from testbed.toxiproxy import Proxy

__all__ = [
    "Fault",
    "api_upstream",
    "committed",
    "judge_scoped",
    "proxied_kubeconfig",
    "render_matrix",
    "sleeping",
    "via",
    "wait_for",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Fault:
    """One cell of the fault matrix: which operation, where the fault hit, what kind of failure."""

    operation: str  # create | rotate | delete
    injection: str  # e.g. "user edit during the call", "API link after the call"
    kind: str  # e.g. "kubectl label", "response dropped", "SIGKILL"
    #: The Databases this fault hit (None: every Database of the scenario).
    names: tuple[str, ...] | None = None

    def label(self) -> str:
        return f"{self.operation}: {self.kind} ({self.injection})"


def api_upstream(kubeconfig: Path) -> str:
    """host:port of the API server a kubeconfig points at."""
    doc = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    server = str(doc["clusters"][0]["cluster"]["server"])
    return server.split("://", 1)[1].rstrip("/")


def proxied_kubeconfig(kubeconfig: Path, proxy: Proxy, path: Path) -> Path:
    """A copy of `kubeconfig` whose server is the proxy (same IP, so the serving certificate matches)."""
    doc = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = f"https://{proxy.listen}"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return path


def via(dsn: str, server_port: int, proxy: Proxy) -> str:
    """The DSN with the server's port replaced by the proxy's (host stays 127.0.0.1)."""
    marker = f"@127.0.0.1:{server_port}/"
    if marker not in dsn:
        raise ValueError("DSN does not name the server on 127.0.0.1")
    return dsn.replace(marker, f"@{proxy.listen}/")


def sleeping(view: ServerView) -> int:
    """Procedure calls sleeping on the server right now (the slow audit wrappers sleep first)."""
    if isinstance(view, PostgresView):
        rows = view.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
        )
    elif isinstance(view, MariaDBView):
        rows = view.sql(
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE state = 'User sleep' AND id <> CONNECTION_ID()"
        )
    else:
        raise TypeError(f"no in-flight probe for {view.kind}")
    return int(rows[0][0])


def committed(view: ServerView, op: str, keys: Iterable[str]) -> int:
    """Committed calls of `op` for these "ns/name" keys, as the audit table holds them."""
    wanted = set(keys)
    return sum(1 for c in view.calls() if c.op == op and f"{c.namespace}/{c.name}" in wanted)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1) -> T:
    """Poll until `probe()` is truthy (bounded; the bound is generous, nothing asserts on time)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def judge_scoped(
    world: World,
    scenario: str,
    names: Sequence[str],
    faults: Sequence[Fault],
    *,
    expected_calls: Mapping[str, Mapping[str, int]] | None = None,
    repeats_allowed: Iterable[str] = (),
) -> CheckReport:
    """Every invariant plus exactly-once per intent, on this scenario's Databases only; then its figures
    (and its fault-matrix rows) into the run's report."""
    keys = [f"{world.ns}/{n}" for n in names]
    checker = InvariantChecker(
        world.kube,
        world.namespaces,
        world.views,
        [op for op in world.operators if op.running],
        scope=keys,
    )
    expected = {f"{world.ns}/{n}": calls for n, calls in (expected_calls or {}).items()}
    report = checker.check(exactly_once=True, expected_calls=expected, repeats_allowed=repeats_allowed)
    world.leaks.add_all(checker.seen_passwords, "a credentials Secret")
    dbms = scenario.split(":", 1)[0]
    matrix = []
    for f in faults:
        hit = [f"{world.ns}/{n}" for n in (f.names if f.names is not None else names)]
        # Intents: what the scenario asked for; calls: what the server ran (both for this operation).
        intents = sum((expected.get(k) or {}).get(f.operation, 0) for k in hit)
        ran = sum((report.calls.get(k) or {}).get(f.operation, 0) for k in hit)
        wrong = sum(
            1
            for v in report.violations
            if v.invariant == "exactly-once" and v.subject in hit and v.detail.startswith(f.operation)
        )
        matrix.append(
            {
                "operation": f.operation,
                "injection": f.injection,
                "kind": f.kind,
                "dbms": dbms,
                "intents": intents,
                "calls": ran,
                "repeats": max(0, ran - intents),
                "violations": wrong,
                "repeats_allowed": f.operation in set(repeats_allowed),
            }
        )
    record_figures(
        scenario,
        {
            **report.figures(),
            **world.operator_figures(),
            "faults": [f.label() for f in faults],
            "matrix": matrix,
            "repeats_allowed": sorted(repeats_allowed),
        },
    )
    if report.violations:
        shown = "\n".join(f"  {v}" for v in report.violations[:40])
        raise AssertionError(f"{len(report.violations)} invariant violation(s) in {scenario}:\n{shown}")
    return report


def render_matrix(path: Path = RESULTS) -> str:
    """The fault matrix of the last run (operation x injection point x failure kind) as Markdown: per
    DBMS, the intents the scenarios asked for, the calls the server committed for them, the repeats
    (calls beyond the intents; marked * where the operator cannot know whether a call ran) and the
    exactly-once violations."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    cells: dict[tuple[str, str, str], dict[str, list[int]]] = {}
    allowed: set[tuple[str, str, str]] = set()
    for figures in doc.get("scenarios", {}).values():
        for row in figures.get("matrix") or []:
            cell = (row["operation"], row["injection"], row["kind"])
            counts = cells.setdefault(cell, {}).setdefault(row["dbms"], [0, 0, 0, 0])
            for i, name in enumerate(("intents", "calls", "repeats", "violations")):
                counts[i] += int(row.get(name, 0))
            if row.get("repeats_allowed"):
                allowed.add(cell)
    head = (
        "| operation | injection point | failure kind | PostgreSQL intents / calls / repeats / violations "
        "| MariaDB intents / calls / repeats / violations |\n|---|---|---|---|---|\n"
    )

    def show(counts: list[int] | None, mark: str) -> str:
        if counts is None:
            return "-"
        return f"{counts[0]} / {counts[1]} / {counts[2]}{mark} / {counts[3]}"

    body = "".join(
        f"| {op} | {at} | {kind} | {show(c.get('pg'), '*' if (op, at, kind) in allowed else '')} | "
        f"{show(c.get('maria'), '*' if (op, at, kind) in allowed else '')} |\n"
        for (op, at, kind), c in sorted(cells.items())
    )
    return head + body
