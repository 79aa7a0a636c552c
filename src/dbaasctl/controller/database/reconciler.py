"""The pass: observe → decide → act, repeated while a step moved the object on, then one status record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError

from dbaasctl.api.conditions import find_condition
from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Admission
from dbaasctl.controller.config import ConfigState
from dbaasctl.controller.database import act, retire, rotate_request
from dbaasctl.controller.database.decide import (
    NOT_READY_RECHECK,
    TRUE_TOKEN,
    decide,
    rotation_reasons,
    secret_usable,
)
from dbaasctl.controller.database.memory import Memory
from dbaasctl.controller.database.metrics import DatabaseMetrics
from dbaasctl.controller.database.model import (
    Adopt,
    Blocked,
    Create,
    Delete,
    Nothing,
    Observed,
    Queued,
    Release,
    RemoveAnnotation,
    RepairLabels,
    RepairSecret,
    Retire,
    Retired,
    RollOut,
    Rotate,
    Step,
    Wait,
)
from dbaasctl.controller.database.observe import Pass, copy_status, observe, rotate_annotation
from dbaasctl.controller.database.previous import previous_secret_name
from dbaasctl.controller.database.writes import DATABASES, Writer, status_body
from dbaasctl.dbms.endpoints import EndpointRegistry
from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.controller import Result
from dbaasctl.kube.errors import ApiError, describe_failure
from dbaasctl.kube.resources import JsonDict

__all__ = ["DatabaseReconciler", "Dependencies", "Memory", "Recorder"]

log = logging.getLogger("dbaasctl.controller.database")

#: Steps one pass may take (e.g. adopt, then repair labels, then settle); more means requeue.
MAX_STEPS = 6


class Recorder(Protocol):
    def normal(
        self, regarding: Mapping[str, Any], reason: str, note: str, action: str | None = None
    ) -> None: ...

    def warning(
        self, regarding: Mapping[str, Any], reason: str, note: str, action: str | None = None
    ) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Dependencies:
    client: KubeApi
    get_database: Callable[[str], JsonDict | None]
    #: Our Secrets (label-selected cache): (namespace, name) → object or None.
    get_secret: Callable[[str, str], JsonDict | None]
    admission: Admission
    registry: EndpointRegistry
    recorder: Recorder
    state: ConfigState
    metrics: DatabaseMetrics = field(default_factory=DatabaseMetrics)
    clock: Callable[[], datetime] = _utcnow
    field_manager: str = "dbaasctl"
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: Leader fencing: may a side effect that takes up to this many seconds start now?
    may_act: Callable[[float], bool] = lambda _duration: True
    #: Roll workloads that opted in after a rotation (needs list/patch on apps workloads).
    rollout_workloads: bool = False


class DatabaseReconciler:
    def __init__(self, deps: Dependencies) -> None:
        self.d = deps
        self.writer = Writer(deps.client, deps.field_manager, deps.sleep)
        self.memory = Memory()
        #: Overdue scheduled rotations are spread over the first minutes after this.
        self.started = deps.clock()

    async def reconcile(self, key: str) -> Result | None:
        if not self.d.state.applied.is_set():
            return Result(requeue_after=NOT_READY_RECHECK)  # never park a worker on the config
        raw = self.d.get_database(key)
        if raw is None:
            self.memory.forget(key)
            self.d.metrics.forget(key)
            return None
        try:
            p = Pass(raw)
        except ValidationError as exc:
            # The CRD schema makes this unreachable for objects it admitted; never act on a half-read object.
            log.error("cannot read Database %s: %s", key, exc)
            return None
        exit_ = await self._steps(p)
        if not p.gone:
            try:
                await self._record(p)
            except ApiError as exc:
                if not exc.is_not_found:
                    exit_ = self._api_failure(p, exc, None)
                p.gone = p.gone or exc.is_not_found  # deleted meanwhile: nothing more to report
            except Exception as exc:
                exit_ = self._api_failure(p, exc, None)
        self._publish(p)
        return exit_.result

    async def _steps(self, p: Pass) -> act.Exit:
        observed: Observed | None = None
        fresh_secret = False
        for _ in range(MAX_STEPS):
            try:
                secret, fresh = await self._read_secret(p, fresh=fresh_secret)
                previous = await self._read_previous(p)
                observed = await observe(
                    p, secret, self.d.admission, self.memory.held_for(p), self.d.clock(), previous,
                    self.memory.ident(p) in self.memory.retired, self.started, self.d.rollout_workloads,
                )  # fmt: skip
                self._tell_legacy(p)
                step = decide(observed)
                if isinstance(step, Rotate | Adopt | RepairLabels | Retired) and not fresh:
                    # A step taken on what the Secret looks like: the cache may lag our own last write
                    # (a rotation just recorded would look undone). Decide again on the server's copy.
                    fresh_secret = True
                    continue
                fresh_secret = False
                log.debug("%s: %s", p.key, type(step).__name__, extra={"database": p.key})
                exit_ = await self._act(p, step, observed, secret, fresh=fresh)
            except ApiError as exc:
                if exc.is_conflict:  # a fence saw the object move on: decide again from the fresh copy
                    try:
                        p.adopt(await self.writer.get_database(p.namespace, p.name))
                    except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as again:
                        if isinstance(again, ApiError) and again.is_not_found:
                            p.gone = True
                            return act.Exit(None)
                        return self._api_failure(p, again, observed)
                    continue
                if exc.is_not_found and exc.path.startswith(DATABASES.path(p.namespace, p.name)):
                    p.gone = True
                    return act.Exit(None)
                return self._api_failure(p, exc, observed)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return self._api_failure(p, exc, observed)
            if exit_ is not None:
                return exit_
        return act.Exit(Result(requeue=True))

    async def _act(
        self, p: Pass, step: Step, o: Observed, secret: JsonDict | None, *, fresh: bool
    ) -> act.Exit | None:
        c = act.Ctx(self.d, self.writer, p, self.memory, secret, fresh=fresh)
        match step:
            case Create(plan):
                return await act.create(c, plan)
            case Rotate(plan, why):
                return await act.rotate(c, plan, why, usable_before=secret_usable(o))
            case RepairSecret(plan, held):
                return await act.store(c, plan, held)
            case Adopt(generation, operation, retire_at):
                # A decision on the observed object, not the record of a call: fenced, so a cached copy
                # that lags our own last status write (rotationToken included) cannot be written back.
                self._settle(p, o, adopted=generation)
                p.status.previous_credentials_retire_at = retire_at
                if operation == "rotate" and self.d.rollout_workloads:
                    p.status.rolled_out_generation = generation - 1  # caught up by `rollout`
                p.adopt(await self.writer.fence_status(p.raw, p.status))
                if operation == "rotate":
                    return await act.rollout(c, generation)
                return None
            case RollOut(generation):
                return await act.rollout(c, generation)
            case Retire(plan, previous):
                return await retire.retire(c, plan, previous, o)
            case Retired(called):
                return await retire.retired(c, called=called)
            case Queued(seconds, why, ready):
                return retire.queued(c, seconds, why, ready, o)
            case RepairLabels():
                return await act.repair_labels(c, secret)
            case RemoveAnnotation():
                await rotate_request.remove_annotation(c)
                return None
            case Delete(plan):
                return await act.delete(c, plan)
            case Release(retain):
                return await act.release(c, retain, secret)
            case Blocked(reason, message, ready, error, retry_after):
                log.info("%s: %s: %s", p.key, reason, message, extra={"database": p.key, "reason": reason})
                if p.ready() != (ready, reason) or _message(p) != message:
                    c.event(reason, message, warning=True)
                p.set_ready(ready, reason, message)
                return act.Exit(Result(requeue_after=retry_after, failed=error))
            case Wait(seconds, quiet):
                if not quiet:
                    self._settle(p, o)
                return act.Exit(Result(requeue_after=seconds))
            case Nothing():
                if not o.finalizer and o.deleting:
                    p.gone = True
                else:
                    self._settle(p, o)
                return act.Exit(None)
        raise AssertionError(f"unhandled step {step!r}")  # pragma: no cover

    def _settle(self, p: Pass, o: Observed, adopted: int | None = None) -> None:
        """All is well: the Secret holds what the DBMS issued last. Ready=True, bookkeeping tidy."""
        status = p.status
        if adopted is not None:
            status.credential_generation = adopted
            pending = status.pending_operation
            if pending is not None and pending.rotation_token:
                status.rotation_token = pending.rotation_token
            if pending is not None and pending.name == "rotate":
                status.last_rotation_time = self.d.clock()
            status.pending_operation = None
            status.provisioned_at = status.provisioned_at or self.d.clock()
            status.endpoint = status.endpoint or p.db.spec.endpoint
            status.secret_name = status.secret_name or p.secret_name
        if o.rotate_annotation not in ("true", "") and status.rotation_token == TRUE_TOKEN:
            status.rotation_token = None
        ready = p.ready()
        if ready is None or ready[0] != "True" or ready[1] not in (reasons.PROVISIONED, reasons.ROTATED):
            p.set_ready("True", reasons.PROVISIONED, f"database available on endpoint {status.endpoint}; "
                        f"credentials in Secret {p.secret_name}")  # fmt: skip
        self.memory.reset(p)

    async def _record(self, p: Pass) -> None:
        """The one status writer on every exit: only the fields this pass changed. The copy it started
        from may lag our own last write (an informer catching up after an outage); sending its other
        fields back would undo a recorded rotation (generation, rotation token), and the next pass
        would rotate again for the same annotation."""
        wanted = status_body(copy_status(p.status), p.db.metadata.generation)
        changed = {k: v for k, v in wanted.items() if p.server_status.get(k) != v}
        if not changed:
            return
        p.adopt(await self.writer.record_status_fields(p.raw, changed), keep_status=True)

    def _api_failure(self, p: Pass, exc: BaseException, o: Observed | None) -> act.Exit:
        """The API server failed mid-pass (after the retries in place): requeue with backoff, and never
        leave Ready=True standing for a Secret this pass saw was unusable."""
        log.info("%s: the API server failed: %s", p.key, exc, extra={"database": p.key})
        ready = p.ready()
        stale = o is not None and o.status.provisioned_at is not None and not secret_usable(o)
        if o is not None and stale and ready is not None and ready[0] == "True":
            why = "; ".join(rotation_reasons(o)) or "the Secret does not hold the last credentials"
            p.set_ready(
                "False",
                reasons.ROTATE_FAILED,
                f"cannot rotate ({why}): the API server failed ({describe_failure(exc)}); retrying",
            )
        return act.Exit(Result(requeue=True, failed=True))

    def _publish(self, p: Pass) -> None:
        if p.gone:
            self.memory.forget(p.key)
            self.d.metrics.forget(p.key)
            return
        ready = p.ready()
        self.d.metrics.observe(
            p.key,
            ready=ready,
            deleting=p.db.metadata.deletion_timestamp is not None,
            rotate_failing=ready is not None and ready[1] in (reasons.ROTATE_FAILED, reasons.RETIRE_FAILED),
        )

    async def _read_secret(self, p: Pass, *, fresh: bool) -> tuple[JsonDict | None, bool]:
        """(the Secret, read from the API server?). Our cache first unless `fresh`; a miss is confirmed
        against the API server (the cache may lag our own write, and a Secret that is not labelled as
        ours is not cached at all)."""
        cached = None if fresh else self.d.get_secret(p.namespace, p.secret_name)
        if cached is not None:
            return cached, False
        return await self.writer.read_secret(p.namespace, p.secret_name), True

    async def _read_previous(self, p: Pass) -> JsonDict | None:
        """The previous Secret of a two-phase rotation, read only while status says one may be pending
        (a retire due, or a rotate or retire whose outcome is not recorded); from the API server, as
        its absence is evidence that retire ran, never a cache's lag."""
        pending = p.status.pending_operation
        if p.status.previous_credentials_retire_at is None and pending is None:
            return None
        if pending is not None and pending.name == "create":
            return None
        return await self.writer.read_secret(p.namespace, previous_secret_name(p.secret_name))

    def _tell_legacy(self, p: Pass) -> None:
        _, key = rotate_annotation(p.db)
        ident = f"{p.key}@{p.db.metadata.uid}"
        if key is not None and key != "dbaasctl.io/rotate" and ident not in self.memory.legacy_told:
            self.memory.legacy_told.add(ident)
            self.d.recorder.normal(
                p.raw,
                reasons.LEGACY_ANNOTATION,
                f"annotation {key} is honoured as dbaasctl.io/rotate; please use dbaasctl.io/rotate",
            )


def _message(p: Pass) -> str | None:
    cond = find_condition(p.status.conditions, reasons.COND_READY)
    return cond.message if cond is not None else None
