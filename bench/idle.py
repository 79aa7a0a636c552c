"""Idle cost: a configured operator with a few Ready Databases and nothing to do, for a while.

Set-up as in production: leader election on (so lease renewals are part of the cost), the default
keepalive (30 s) on the endpoint, K Databases provisioned through the operator beforehand. Then the
window is measured: the operator's API requests by verb and code, what the DBMS saw from it (calls per
statement from pg_stat_statements and transactions from pg_stat_database, in the operator's database
only; the benchmark's own queries run in another database), CPU seconds over wall time, and RSS.

`rest_client_requests_total` has no resource label, so "only lease renewals" is checked by arithmetic:
renewals are PUTs on the Lease every retry period (2 s by default), and no other PUT, POST, PATCH or
DELETE should appear; GETs in the window are watch re-opens (the API server ends watches after a while)
and lease re-reads.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from bench import procstat
from bench.api import DATABASES, gather_limited
from bench.scrape import scrape, settle
from bench.stats import by_verb
from bench.watcher import DatabaseWatcher, is_gone, is_ready
from bench.world import World

log = logging.getLogger(__name__)

RETRY_PERIOD = 2.0  # dbaasctl's default --retry-period: one lease renewal per period
KEEPALIVE = 30


#: What one keepalive ping costs on PostgreSQL: the ping, then the reset asyncpg runs (as one simple
#: query) when the connection goes back to its pool.
KEEPALIVE_STATEMENTS = frozenset(
    {"SELECT 1", "SELECT $1", "SELECT pg_advisory_unlock_all()", "CLOSE ALL", "UNLISTEN *", "RESET ALL"}
)


def _keepalive_only(statements: dict[str, int]) -> bool:
    """Every statement the operator ran while idle belongs to a keepalive ping."""
    return all(q.strip().rstrip(";") in KEEPALIVE_STATEMENTS for q in statements)


async def run_idle(world: World, seconds: float, *, databases: int = 10) -> dict[str, Any]:
    namespace = world.namespace("idle")
    world.apply_config(keepalive=KEEPALIVE)
    subject = world.operator(namespace, workers=8, leader_elect=True, label="idle")
    path = DATABASES.format(ns=namespace)
    names = [f"idle-{i:03d}" for i in range(databases)]
    try:
        await asyncio.to_thread(subject.start)
        async with world.api() as api:
            watcher = DatabaseWatcher(api, namespace)
            await watcher.start()
            ready = watcher.expect(names, is_ready)
            body = {"apiVersion": "dbaasctl.io/v1", "kind": "Database", "spec": {"endpoint": "fast"}}
            await gather_limited(
                8, [partial(api.post, path, {**body, "metadata": {"name": n}}) for n in names]
            )
            if not await ready.wait(120):
                raise RuntimeError(
                    f"idle set-up: {len(ready.pending)} Databases not Ready; {subject.log_tail(10)}"
                )
            await watcher.stop()
            before = await settle(subject.metrics_url, quiet=3.0)
            pg_before = await asyncio.to_thread(world.pg_activity)
            proc_before = procstat.sample(subject.pid)
            log.info("idle: measuring %.0fs with %d Ready Databases", seconds, databases)
            await asyncio.sleep(seconds)
            proc_after = procstat.sample(subject.pid)
            after = await scrape(subject.metrics_url)
            pg_after = await asyncio.to_thread(world.pg_activity)
            wall = proc_after.at - proc_before.at
            delta = after.minus(before)
            by_code = {f"{m} {c}": v for (m, c), v in delta.requests.items() if v}
            verbs = by_verb(delta.requests)
            statements = {
                q: c - pg_before["statements"].get(q, 0)
                for q, c in pg_after["statements"].items()
                if c - pg_before["statements"].get(q, 0) > 0
            }
            result = {
                "seconds": round(wall, 1),
                "databases": databases,
                "keepalive_s": KEEPALIVE,
                "cpu_seconds": round(proc_after.cpu_seconds - proc_before.cpu_seconds, 3),
                "cpu_percent": round(100.0 * (proc_after.cpu_seconds - proc_before.cpu_seconds) / wall, 3),
                "rss_mb": round(proc_after.rss_bytes / 2**20, 1),
                "requests": dict(sorted(by_code.items())),
                "expected_lease_renewals": round(wall / RETRY_PERIOD),
                "writes_other_than_lease": int(sum(verbs.get(v, 0.0) for v in ("POST", "PATCH", "DELETE"))),
                "event_writes": delta.event_writes,
                "reconciles": delta.reconciles,
                "dbms_xacts": pg_after["xacts"] - pg_before["xacts"],
                "dbms_statements": statements,
                "dbms_statements_summary": "; ".join(f"{c}x {q[:40]}" for q, c in statements.items())
                or "none",
                "dbms_only_keepalives": _keepalive_only(statements) if world.stat_statements else None,
                "expected_keepalives": round(wall / KEEPALIVE * 2),  # two endpoints (fast, sample)
            }
            # Clean up through the operator, so the namespace can go.
            watcher = DatabaseWatcher(api, namespace)
            await watcher.start()
            gone = watcher.expect(names, is_gone)
            await gather_limited(8, [partial(api.delete, f"{path}/{n}") for n in names])
            await gone.wait(120)
            await watcher.stop()
    finally:
        subject.stop()
        world.drop_namespace(namespace)
    log.info("idle: CPU %.3f%%, requests %s", result["cpu_percent"], result["requests"])
    return result
