"""Cache memory and start-up: N provisioned Databases and their N Secrets present before the operator starts.

How the objects are made, and why: each Database is created with our finalizer, then its Secret is
created with the operator's own `build_secret` (labels, ownerReference to the Database's uid, checksum
annotations, realistic credential data), then its status is written through the status subresource
with the operator's own `DatabaseStatus` model (Ready=True/Provisioned, provisionedAt, secretName,
observedGeneration). They are byte for byte what the operator leaves behind after a create, on an
endpoint that exists with its class, so:

- the informer caches hold exactly the production shape (not stubs, not error statuses);
- the operator's initial pass over all N is its real steady-state pass: it reads the cache, finds
  nothing to do (no DBMS call, no write) and forgets the key. The alternative, pointing them at an
  endpoint whose class is absent, would turn that pass into N `ClassNotFound` status writes and measure
  something else. The writes during start-up are reported, so a non-idle pass would show.

Measured: start → /readyz (informers synced; with leader election, the lease held), start → initial
pass done (reconciles ≥ N, queue empty), RSS at ready and after the pass, peak RSS, CPU, requests.

And the floor under start-up, in the same run: a fresh interpreter importing the operator's run path,
and a bare client reading both collections the way the informers do (pages of the same size, both at
once, JSON decoded). Start-up can only be cut down to their sum; what is above it is the operator's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bench import procstat
from bench.api import DATABASES, SECRETS, Api, gather_limited
from bench.scrape import scrape, settle
from bench.stats import by_verb, writes
from bench.world import World
from dbaasctl.api.conditions import Condition
from dbaasctl.api.database import FINALIZER, DatabaseStatus
from dbaasctl.controller.secrets import build_secret

log = logging.getLogger(__name__)

ENDPOINT = "fast"
#: The informers' page size (kube/cache/source.py).
PAGE_SIZE = 500


def _credentials(namespace: str, name: str) -> dict[str, str]:
    """What the fast class renders: same keys, same lengths (64 hex password)."""
    user = f"f_{name.replace('-', '_')}_{secrets.token_hex(8)}"
    password = secrets.token_hex(32)
    return {
        "username": user,
        "password": password,
        "database": "bench",
        "schema": user,
        "host": "127.0.0.1",
        "port": "5432",
        "uri": f"postgresql://{user}:{password}@127.0.0.1:5432/bench?options=-csearch_path%3D{user}",
    }


def _status(name: str, generation: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    secret = f"{name}-credentials"
    return DatabaseStatus(
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Provisioned",
                message=f"database created on endpoint {ENDPOINT}; credentials in Secret {secret}",
                last_transition_time=now,
                observed_generation=generation,
            )
        ],
        observed_generation=generation,
        secret_name=secret,
        endpoint=ENDPOINT,
        provisioned_at=now,
        credential_generation=1,
    ).to_api()


async def populate(api: Api, namespace: str, n: int, *, concurrency: int = 32) -> float:
    db_path = DATABASES.format(ns=namespace)
    secret_path = SECRETS.format(ns=namespace)

    async def one(i: int) -> None:
        name = f"cached-{i:05d}"
        db = await api.post(
            db_path,
            {
                "apiVersion": "dbaasctl.io/v1",
                "kind": "Database",
                "metadata": {"name": name, "namespace": namespace, "finalizers": [FINALIZER]},
                "spec": {"endpoint": ENDPOINT},
            },
        )
        await api.post(secret_path, build_secret(db, f"{name}-credentials", _credentials(namespace, name)))
        generation = int(db["metadata"].get("generation") or 1)
        await api.merge_patch(f"{db_path}/{name}/status", {"status": _status(name, generation)})

    start = time.monotonic()
    outcomes = await gather_limited(concurrency, [partial(one, i) for i in range(n)])
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {n} cached objects could not be created; first: {failed[0]}")
    return time.monotonic() - start


async def _list_floor(api: Api, namespace: str) -> float:
    """Seconds for a bare client to read every Database and Secret in `namespace`: the API server's
    share of start-up (serialising N + N objects), plus decoding them."""

    async def read_all(path: str) -> None:
        token = ""
        while True:
            params = {"limit": str(PAGE_SIZE), **({"continue": token} if token else {})}
            page = await api.get(path, params=params)
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    start = time.monotonic()
    await asyncio.gather(read_all(DATABASES.format(ns=namespace)), read_all(SECRETS.format(ns=namespace)))
    return time.monotonic() - start


def _import_floor(tries: int = 3) -> float:
    """Seconds for a fresh interpreter to import what `dbaasctl run` imports before it does anything
    (the best of `tries`: other work on the machine only ever adds)."""
    best = float("inf")
    for _ in range(tries):
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import dbaasctl.operator"], check=True)
        best = min(best, time.monotonic() - start)
    return best


async def _strip_finalizers(api: Api, namespace: str, n: int) -> None:
    path = DATABASES.format(ns=namespace)
    await gather_limited(
        32,
        [
            partial(
                api.merge_patch, f"{path}/cached-{i:05d}", {"metadata": {"finalizers": None}}, ok_missing=True
            )
            for i in range(n)
        ],
    )


async def run_cache(
    world: World, n: int, *, timeout: float = 600.0, initial_lists: tuple[str, ...] = ("list",)
) -> list[dict[str, Any]]:
    """Start-up over N Databases + N Secrets, once per way of filling the caches (`list`: paged LIST,
    then WATCH; `watch-list`: one streaming WATCH with sendInitialEvents), each a fresh operator
    process over the same objects, one after the other."""
    bad = [m for m in initial_lists if m not in ("list", "watch-list")]
    if bad:
        raise ValueError(f"initial_lists: list or watch-list, not {bad}")
    namespace = world.namespace("cache")
    world.apply_config()
    log.info("cache: creating %d Databases + %d Secrets in %s", n, n, namespace)
    results = []
    async with world.api(connections=40) as api:
        populate_s = await populate(api, namespace, n)
        log.info("cache: populated in %.1fs", populate_s)
        floor = {
            "import_s": round(await asyncio.to_thread(_import_floor), 2),
            "list_s": round(await _list_floor(api, namespace), 2),
        }
        log.info("cache: floor: import %.2fs, bare LIST %.2fs", floor["import_s"], floor["list_s"])
        for initial_list in initial_lists:
            result = await _start_once(world, namespace, n, initial_list, timeout)
            result["populate_s"] = round(populate_s, 1)
            result["floor"] = floor
            log.info(
                "cache (%s): ready after %.2fs, RSS %.1f MB",
                initial_list,
                result["start_to_ready_s"],
                result["rss_after_sync_mb"],
            )
            results.append(result)
        if not world.owned:  # a borrowed control plane outlives us: let the namespace go
            await _strip_finalizers(api, namespace, n)
    world.drop_namespace(namespace)
    return results


async def _start_once(
    world: World, namespace: str, n: int, initial_list: str, timeout: float
) -> dict[str, Any]:
    flag = "--watch-list" if initial_list == "watch-list" else "--no-watch-list"
    subject = world.operator(
        namespace, workers=8, leader_elect=True, label=f"cache-{initial_list}", extra_args=(flag,)
    )
    t0 = time.monotonic()
    await asyncio.to_thread(subject.start)  # returns once /readyz answers 200
    ready_s = time.monotonic() - t0
    at_ready = procstat.sample(subject.pid)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settled_s = None
        while loop.time() < deadline:
            current = await scrape(subject.metrics_url)
            if current.reconciles >= n and current.queue_depth == 0:
                settled_s = time.monotonic() - t0
                break
            await asyncio.sleep(0.5)  # each scrape costs the operator CPU: not too often
        final = await settle(subject.metrics_url)
        after = procstat.sample(subject.pid)
        verbs = by_verb(final.requests)
        return {
            "initial_list": initial_list,
            "databases": n,
            "secrets": n,
            "start_to_ready_s": round(ready_s, 2),
            "start_to_settled_s": round(settled_s, 2) if settled_s is not None else None,
            "reconciles": final.reconciles,
            "rss_at_ready_mb": round(at_ready.rss_bytes / 2**20, 1),
            "rss_after_sync_mb": round(after.rss_bytes / 2**20, 1),
            "peak_rss_mb": round(after.peak_rss_bytes / 2**20, 1),
            "cpu_seconds": round(after.cpu_seconds, 2),
            "requests": verbs,
            "writes": writes(verbs),
            "event_writes": final.event_writes,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "note": "readiness polled every 0.2 s by the test bed; times include Python start-up",
        }
    finally:
        subject.stop()
