"""Provisioning, rotation and deletion storms: N Databases at once, against one subject.

Subjects:
- `operator`: `dbaasctl run --workers C`, the endpoint allowing C concurrent operations, no rps limit;
- `single`: `dbaasctl run --workers 1` with `spec.rps` limiting on (default 1, the value the reference
  operator's chart and example config ship), the reference operator's behaviour (one reconcile at a
  time, rate-limited DBMS calls);
- `raw`: bench/raw.py at concurrency C, the physical limit;
- `kopf`: the same job written with kopf (bench/peers/kopf_operator.py), DBMS concurrency C;
- `baseline`: the operator exactly as `operator`, run from another revision's source (`--baseline-src`):
  before/after in one run.

Each storm gets a fresh namespace and a fresh subject process, applies N Databases straight through the
API (not kubectl per object), waits for all to be Ready, annotates all of them with
`dbaasctl.io/rotate=true`, waits for the new credentials, deletes all of them and waits until they are
gone. A phase that does not finish in time is reported incomplete and ends the storm.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from bench.api import DATABASES, SECRETS, Api
from bench.measure import Action, PhaseResult, run_phase
from bench.subjects import Subject
from bench.watcher import DatabaseWatcher, Predicate, generation, is_gone, is_ready, rotated_past
from bench.world import PROCEDURES, World

log = logging.getLogger(__name__)

SUBJECTS = ("operator", "single", "raw", "kopf", "baseline")
#: The reference operator's chart and example config set `rps: 1`.
SINGLE_WORKER_RPS = 1.0


@dataclass
class StormResult:
    subject: str
    procedures: str
    n: int
    concurrency: int
    phases: list[PhaseResult] = field(default_factory=list)
    secrets_after_create: int | None = None
    secrets_after_delete: int | None = None
    failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "procedures": self.procedures,
            "n": self.n,
            "concurrency": self.concurrency,
            "phases": [p.to_json() for p in self.phases],
            "secrets_after_create": self.secrets_after_create,
            "secrets_after_delete": self.secrets_after_delete,
            "failure": self.failure,
        }

    def phase(self, name: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.phase == name), None)


def _subject(
    world: World, kind: str, namespace: str, procedures: str, concurrency: int, single_rps: float
) -> Subject:
    if kind in ("raw", "kopf"):
        return world.raw(namespace, concurrency=concurrency, procedures=procedures, peer=kind)
    if kind == "single":
        world.apply_config(rps=single_rps, concurrency=1)
        return world.operator(namespace, workers=1, label="single")
    world.apply_config(rps=0, concurrency=concurrency)
    if kind == "baseline":
        if world.baseline_src is None:
            raise ValueError("the baseline subject needs world.baseline_src")
        return world.operator(namespace, workers=concurrency, label="baseline", src=world.baseline_src)
    return world.operator(namespace, workers=concurrency, label="operator")


async def _count_secrets(api: Api, namespace: str) -> int:
    listing = await api.get(
        SECRETS.format(ns=namespace), params={"labelSelector": "app.kubernetes.io/managed-by=dbaasctl"}
    )
    return len(listing.get("items") or [])


def _per_object_timeout(kind: str, procedures: str, single_rps: float = SINGLE_WORKER_RPS) -> float:
    """Seconds per object on top of a fixed 120 s: generous, so only a stuck subject times out."""
    if kind == "single":
        return 10.0 / single_rps  # the limiter alone needs 1/rps per object
    return 2.0 if procedures == "sample" or kind == "kopf" else 0.5


async def run_storm(
    world: World,
    kind: str,
    n: int,
    *,
    procedures: str = "fast",
    concurrency: int = 8,
    apply_concurrency: int = 32,
    phases: tuple[str, ...] = ("create", "rotate", "delete"),
    single_rps: float = SINGLE_WORKER_RPS,
) -> StormResult:
    if kind not in SUBJECTS:
        raise ValueError(f"unknown subject {kind!r}")
    _cls, endpoint, _procs = PROCEDURES[procedures]
    namespace = world.namespace(f"storm-{kind}-{n}")
    result = StormResult(kind, procedures, n, 1 if kind == "single" else concurrency)
    subject = _subject(world, kind, namespace, procedures, concurrency, single_rps)
    timeout = 120.0 + n * _per_object_timeout(kind, procedures, single_rps)
    names = [f"db-{i:05d}" for i in range(n)]
    path = DATABASES.format(ns=namespace)
    log.info("storm %s/%s N=%d in %s", kind, procedures, n, namespace)
    try:
        await asyncio.to_thread(subject.start)
        async with world.api(connections=apply_concurrency + 4) as api:
            watcher = DatabaseWatcher(api, namespace)
            await watcher.start()
            try:

                async def create(name: str) -> None:
                    body = {
                        "apiVersion": "dbaasctl.io/v1",
                        "kind": "Database",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"endpoint": endpoint},
                    }
                    await api.post(path, body)

                async def annotate(name: str) -> None:
                    await api.merge_patch(
                        f"{path}/{name}", {"metadata": {"annotations": {"dbaasctl.io/rotate": "true"}}}
                    )

                async def delete(name: str) -> None:
                    await api.delete(f"{path}/{name}")

                act: Action
                done: Predicate
                for phase in phases:
                    if phase == "create":
                        act, done = create, is_ready
                    elif phase == "rotate":
                        baseline = {name: generation(watcher.objects.get(name)) for name in names}
                        act, done = annotate, rotated_past(baseline)
                    elif phase == "delete":
                        act, done = delete, is_gone
                    else:
                        raise ValueError(f"unknown phase {phase!r}")
                    outcome = await run_phase(
                        phase,
                        subject,
                        watcher,
                        names,
                        act,
                        done,
                        apply_concurrency=apply_concurrency,
                        timeout=timeout,
                        components=world.components(),
                    )
                    result.phases.append(outcome)
                    log.info(
                        "  %s: %d/%d in %ss (%s/s), p95 %s ms",
                        phase,
                        outcome.completed,
                        n,
                        outcome.seconds,
                        outcome.throughput_per_s,
                        outcome.latency.get("p95_ms"),
                    )
                    if phase == "create":
                        result.secrets_after_create = await _count_secrets(api, namespace)
                    if phase == "delete":
                        result.secrets_after_delete = await _count_secrets(api, namespace)
                    if outcome.completed < n:
                        result.failure = (
                            f"{phase}: only {outcome.completed}/{n} done within {timeout:.0f}s; "
                            f"subject log tail:\n{subject.log_tail(15)}"
                        )
                        break
            finally:
                await watcher.stop()
    finally:
        subject.stop()
        world.drop_namespace(namespace)
    return result
