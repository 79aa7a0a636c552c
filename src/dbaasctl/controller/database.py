"""The Database reconciler: level-based create / rotate / delete, one key (`namespace/name`) per pass.

Each pass reads the Database from the cache and decides from what is there, never from what it did
last time:

1. Deleting (our finalizer present): Retain → release the Secret and let go. Delete → run the delete
   procedure, delete our Secret, drop the finalizer. A delete that fails stays visible (Ready=False
   `DeleteFailed`, a Warning Event, `dbaasctl_database_deletes_failing`) and is retried with backoff;
   switching deletionPolicy to Retain is the documented way out when the database cannot be deleted.
2. Not provisioned (`status.provisionedAt` unset): admission (no DBMS call on any failure), then the
   finalizer is added **before** the create call, so nothing we create is ever orphaned; create → Secret
   → status. Once provisionedAt is recorded create never runs again: a failed rotation, a lost Secret or
   a flipped Ready condition cannot turn into a second create (the reference operator's worst bug).
3. Provisioned: rotate when asked (annotation `"true"` or a new token value), when our Secret is gone or
   its data was edited (we cannot re-derive a password, so the repair is fresh credentials), and when the
   class's rotation interval has elapsed (requeue_after until then). A failed rotation keeps Ready=True
   while the Secret still holds the previous, working credentials, with reason `RotateFailed`.

Writes are merge patches carrying the resourceVersion we read, so a stale view yields 409 and a requeue
instead of a lost update; status is written only when it changed. Failures are reported (condition +
Event) and then raised, so the work queue retries with per-item exponential backoff and the reconcile
error metric counts them. Messages in conditions and Events are built from names and error *reasons*;
the DBMS's own error text (which may echo credentials) goes to the log only, redacted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn, Protocol

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from dbaasctl.api.conditions import find_condition, set_condition
from dbaasctl.api.database import FINALIZER, ROTATE_ANNOTATION, Database
from dbaasctl.api.databaseclass import DatabaseClassSpec
from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Admission, AdmissionError, NotReadyError, Plan, SecretRenderError
from dbaasctl.controller.config import ConfigState
from dbaasctl.controller.secrets import (
    SecretState,
    build_secret,
    inspect_secret,
    metadata_repair_patch,
    release_patch,
    write_patch,
)
from dbaasctl.dbms.drivers import DbmsError
from dbaasctl.dbms.drivers import Reason as DbmsReason
from dbaasctl.dbms.endpoints import EndpointRegistry
from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.controller import Result
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import SECRETS, JsonDict, ResourceRef
from dbaasctl.observability import metrics as m

__all__ = [
    "DATABASES",
    "DatabaseMetrics",
    "DatabaseReconciler",
    "Dependencies",
    "Failure",
    "Recorder",
]

log = logging.getLogger(__name__)

DATABASES = ResourceRef("dbaasctl.io", "v1", "databases", True, "Database")
#: Requeue delay when a foreign Secret blocks us: its deletion is invisible to our label-selected watch.
CONFLICT_RECHECK = 5.0
#: Requeue delay while the operator's own configuration view catches up.
NOT_READY_RECHECK = 1.0

Op = Literal["create", "rotate", "delete"]
#: Ready reasons meaning "the DBMS issued credentials the Secret does not hold": the repair is a rotation.
STALE_SECRET_REASONS = frozenset({reasons.SECRET_TEMPLATE_ERROR, reasons.SECRET_WRITE_FAILED})


class Recorder(Protocol):
    def normal(
        self, regarding: Mapping[str, Any], reason: str, note: str, action: str | None = None
    ) -> None: ...

    def warning(
        self, regarding: Mapping[str, Any], reason: str, note: str, action: str | None = None
    ) -> None: ...


class Failure(Exception):
    """A failure already reported in the status and an Event; raising it makes the queue back off.

    The message is the (secret-free) condition message.
    """

    reported = True  # the kit's workers log it in one line, without a traceback


class DatabaseMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.operations = m.counter(
            "dbaasctl_database_operations_total",
            "Database lifecycle operations by outcome (create, rotate, delete; success or error).",
            ("operation", "result"),
            registry,
        )
        self.not_ready = m.gauge(
            "dbaasctl_databases_not_ready",
            "Databases whose Ready condition is not True, by reason.",
            ("reason",),
            registry,
        )
        self.deletes_failing = m.gauge(
            "dbaasctl_database_deletes_failing",
            "Databases being deleted whose delete procedure currently fails (they stay Terminating).",
            (),
            registry,
        )
        self.rotation_failing = m.gauge(
            "dbaasctl_database_rotations_failing",
            "Databases whose last rotation attempt failed.",
            (),
            registry,
        )
        for op in ("create", "rotate", "delete"):
            for result in ("success", "error"):
                self.operations.labels(op, result)
        self._not_ready: dict[str, str] = {}
        self._deleting: set[str] = set()
        self._rotating: set[str] = set()

    def count(self, op: Op, ok: bool) -> None:
        self.operations.labels(op, "success" if ok else "error").inc()

    def ready(self, key: str, status: str, reason: str) -> None:
        previous = self._not_ready.pop(key, None)
        if status != "True":
            self._not_ready[key] = reason
        if previous != self._not_ready.get(key):
            self._publish_not_ready(previous, self._not_ready.get(key))

    def _publish_not_ready(self, *touched: str | None) -> None:
        counts: dict[str, int] = {}
        for reason in self._not_ready.values():
            counts[reason] = counts.get(reason, 0) + 1
        for reason in {r for r in touched if r is not None}:
            self.not_ready.labels(reason).set(counts.get(reason, 0))

    def delete_failing(self, key: str, failing: bool) -> None:
        (self._deleting.add if failing else self._deleting.discard)(key)
        self.deletes_failing.set(len(self._deleting))

    def rotation_failed(self, key: str, failing: bool) -> None:
        (self._rotating.add if failing else self._rotating.discard)(key)
        self.rotation_failing.set(len(self._rotating))

    def forget(self, key: str) -> None:
        previous = self._not_ready.pop(key, None)
        self._publish_not_ready(previous)
        self.delete_failing(key, False)
        self.rotation_failed(key, False)


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


class _Pass:
    """One reconcile of one Database: the freshest object we know, and the status we are building."""

    def __init__(self, raw: JsonDict) -> None:
        self.adopt(raw)
        self.status = self.db.status.model_copy(deep=True)
        self.finished = False  # the Database is gone (finalizer removed): report nothing more about it
        self.fresh = False  # `raw` came from the API server in this pass, not from the cache

    def adopt(self, raw: JsonDict) -> None:
        """Take a newer copy of the object (a patch response) as the base of later writes."""
        self.raw = raw
        self.db = Database.model_validate(raw)
        self.server_status = self.db.status.to_api()

    def restart_from(self, raw: JsonDict) -> None:
        self.adopt(raw)
        self.status = self.db.status.model_copy(deep=True)
        self.fresh = True

    @property
    def key(self) -> str:
        return self.db.key

    @property
    def namespace(self) -> str:
        return self.db.metadata.namespace or ""

    @property
    def name(self) -> str:
        return self.db.metadata.name

    @property
    def rv(self) -> str:
        return self.db.metadata.resource_version or ""

    def set_ready(self, status: Literal["True", "False", "Unknown"], reason: str, message: str) -> None:
        set_condition(
            self.status.conditions,
            reasons.COND_READY,
            status,
            reason,
            message,
            observed_generation=self.db.metadata.generation,
        )

    def ready(self) -> tuple[str, str] | None:
        cond = find_condition(self.status.conditions, reasons.COND_READY)
        return (cond.status, cond.reason) if cond is not None else None


class DatabaseReconciler:
    def __init__(self, deps: Dependencies) -> None:
        self.d = deps

    # -- entry ---------------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        if not await self.d.state.wait_applied(within=60.0):
            raise RuntimeError("the OperatorConfig was not applied within 60s; retrying")
        raw = self.d.get_database(key)
        if raw is None:
            self.d.metrics.forget(key)
            return None
        try:
            p = _Pass(raw)
        except ValidationError as exc:
            # The CRD schema makes this unreachable for objects it admitted; never act on a half-read object.
            log.error("cannot read Database %s: %s", key, exc)
            return None
        try:
            for _ in range(3):
                try:
                    if p.db.metadata.deletion_timestamp is not None:
                        return await self._finalize(p)
                    if p.status.provisioned_at is None:
                        return await self._provision(p)
                    return await self._maintain(p)
                except _Restart:
                    log.debug("%s: the cache was behind the API server; deciding again", key)
            return Result(requeue=True)
        except ApiError as exc:
            if exc.is_conflict:
                log.debug("%s: conflict (%s); requeueing against the fresh object", key, exc.reason)
                return Result(requeue=True)
            if exc.is_not_found and exc.path.startswith(DATABASES.path(p.namespace)):
                return None  # the Database itself is gone; its delete event brings us back if needed
            raise
        except NotReadyError as exc:
            log.debug("%s: %s; checking again shortly", key, exc)
            return Result(requeue_after=NOT_READY_RECHECK)
        finally:
            ready = p.ready()
            if ready is not None and not p.finished:
                self.d.metrics.ready(key, *ready)

    # -- helpers -------------------------------------------------------------------------------------

    def _event(self, p: _Pass, reason: str, note: str, *, warning: bool = False) -> None:
        if warning:
            self.d.recorder.warning(p.raw, reason, note)
        else:
            self.d.recorder.normal(p.raw, reason, note)

    async def _flush(self, p: _Pass) -> None:
        """Write the status if it differs from what the server has."""
        p.status.observed_generation = p.db.metadata.generation
        wanted = p.status.to_api()
        if wanted == p.server_status:
            return
        body = {"metadata": {"resourceVersion": p.rv}, "status": wanted}
        fresh = await self.d.client.patch(
            DATABASES.path(p.namespace, p.name, "status"), body, "merge", field_manager=self.d.field_manager
        )
        status = p.status
        p.adopt(fresh)
        p.status = status
        p.fresh = True

    async def _patch_metadata(self, p: _Pass, metadata: JsonDict) -> None:
        body = {"metadata": {"resourceVersion": p.rv, **metadata}}
        fresh = await self.d.client.patch(
            DATABASES.path(p.namespace, p.name), body, "merge", field_manager=self.d.field_manager
        )
        status = p.status
        p.adopt(fresh)
        p.status = status
        p.fresh = True

    async def _confirm_fresh(self, p: _Pass) -> None:
        """Before any DBMS call, make sure we decided on the API server's current object.

        The cache can lag our own last write by a few milliseconds: a pass woken by our finalizer patch may
        still see a Database without provisionedAt, or with the rotate annotation we already removed, and
        would run create or rotate a second time. One GET per DBMS call closes that window: if the object
        moved on, the pass starts over from the fresh copy.
        """
        if p.fresh:
            return
        fresh = await self.d.client.get(DATABASES.path(p.namespace, p.name))
        changed = str((fresh.get("metadata") or {}).get("resourceVersion") or "") != p.rv
        p.fresh = True
        if changed:
            p.restart_from(fresh)
            raise _Restart

    async def _ensure_finalizer(self, p: _Pass) -> None:
        finalizers = list(p.db.metadata.finalizers)
        if FINALIZER not in finalizers:
            await self._patch_metadata(p, {"finalizers": [*finalizers, FINALIZER]})
            log.debug("%s: finalizer added", p.key)

    async def _remove_finalizer(self, p: _Pass) -> None:
        finalizers = [f for f in p.db.metadata.finalizers if f != FINALIZER]
        await self._patch_metadata(p, {"finalizers": finalizers or None})

    async def _report(
        self, p: _Pass, reason: str, message: str, *, ready: Literal["True", "False"] = "False"
    ) -> None:
        """Put a failure on the Ready condition and into a Warning Event, and write the status."""
        log.info("%s: %s: %s", p.key, reason, message, extra={"database": p.key, "reason": reason})
        p.set_ready(ready, reason, message)
        self._event(p, reason, message, warning=True)
        await self._flush(p)

    async def _fail(
        self, p: _Pass, reason: str, message: str, *, ready: Literal["True", "False"] = "False"
    ) -> NoReturn:
        """`_report`, then raise so the work queue backs off and the error metric counts it."""
        await self._report(p, reason, message, ready=ready)
        raise Failure(f"{reason}: {message}")

    async def _read_secret(self, p: _Pass, name: str) -> JsonDict | None:
        """Our cache first; a miss is confirmed against the API server (the cache may lag our own write,
        and a Secret that is not labelled as ours is not cached at all)."""
        cached = self.d.get_secret(p.namespace, name)
        if cached is not None:
            return cached
        try:
            return await self.d.client.get(SECRETS.path(p.namespace, name))
        except ApiError as exc:
            if exc.is_not_found:
                return None
            raise

    def _secret_name(self, p: _Pass) -> str:
        return p.status.secret_name or p.db.secret_name

    async def _write_secret(self, p: _Pass, secret: JsonDict | None, data: Mapping[str, str]) -> str:
        """Create or update our Secret; returns "created" or "updated". Raises ApiError on failure."""
        name = self._secret_name(p)
        if secret is not None:
            path = SECRETS.path(p.namespace, name)
            try:
                await self.d.client.patch(
                    path, write_patch(secret, p.raw, data), "merge", field_manager=self.d.field_manager
                )
            except ApiError as exc:
                if not exc.is_conflict:
                    raise
                # Someone touched the Secret since we read it; the new credentials must not be lost for
                # that, so write once more against the fresh copy if it is still ours.
                fresh = await self.d.client.get(path)
                if not inspect_secret(fresh, p.raw).owned:
                    raise
                await self.d.client.patch(
                    path, write_patch(fresh, p.raw, data), "merge", field_manager=self.d.field_manager
                )
            return "updated"
        await self.d.client.create(
            SECRETS.path(p.namespace), build_secret(p.raw, name, data), field_manager=self.d.field_manager
        )
        return "created"

    @staticmethod
    def _dbms_reason(op: Op, exc: DbmsError) -> str:
        if op == "rotate":
            return reasons.ROTATE_FAILED
        if op == "delete":
            return reasons.DELETE_FAILED
        if exc.transient or exc.reason is DbmsReason.UNKNOWN_ENDPOINT:
            return reasons.ENDPOINT_UNAVAILABLE
        if exc.reason is DbmsReason.INVALID_CLASS:
            return reasons.CLASS_INVALID
        return reasons.CREATE_FAILED

    @staticmethod
    def _dbms_message(op: Op, procedure: str, endpoint: str, exc: DbmsError) -> str:
        """Facts only: the operation, the procedure, the endpoint and the error's reason/SQLSTATE."""
        what = {
            DbmsReason.CONNECTION_FAILED: "the endpoint cannot be reached",
            DbmsReason.OPERATION_TIMEOUT: "the call timed out",
            DbmsReason.UNKNOWN_ENDPOINT: "the endpoint is not open",
            DbmsReason.PROCEDURE_NOT_FOUND: "the procedure does not exist",
            DbmsReason.WRONG_PARAMETERS: "the procedure does not take the inputs the class passes",
            DbmsReason.BAD_RESULT_SHAPE: "the procedure did not return one key/value row set",
            DbmsReason.DUPLICATE_KEY: "the procedure returned a key twice",
            DbmsReason.INVALID_CLASS: "the class's procedure name or inputs break the contract",
            DbmsReason.PROCEDURE_FAILED: "the procedure raised an error",
        }.get(exc.reason, "the call failed")
        sqlstate = f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else ""
        return (
            f"{op} procedure {procedure} on endpoint {endpoint} failed: {what} ({exc.reason}{sqlstate}); "
            "details in the operator log; retrying with backoff"
        )

    async def _call(self, p: _Pass, plan: Plan, op: Op, why: str = "") -> dict[str, str]:
        procedure, inputs = plan.operation(op)
        await self._confirm_fresh(p)
        # Logged, not an Event: the outcome (Created, Rotated with its why, Deleted, or a Warning) is the
        # Event. An in-progress Event per call added a third of the API server's write load in a storm.
        log.debug(
            "%s: calling %s procedure %s on endpoint %s%s",
            p.key,
            op,
            procedure,
            plan.endpoint,
            f" ({why})" if why else "",
            extra={"database": p.key, "endpoint": plan.endpoint, "operation": op},
        )
        try:
            result = await self.d.registry.run(
                plan.endpoint, procedure, inputs, expect_rows=op != "delete", operation=op
            )
        except DbmsError as exc:
            self.d.metrics.count(op, False)
            # The full message (the DBMS's own words, already redacted by the driver) goes to the log only.
            log.warning(
                "%s: %s procedure %s on endpoint %s failed: %s",
                p.key,
                op,
                procedure,
                plan.endpoint,
                exc,
                extra={"database": p.key, "endpoint": plan.endpoint, "operation": op},
            )
            raise _CallFailed(
                self._dbms_reason(op, exc), self._dbms_message(op, procedure, plan.endpoint, exc)
            ) from None
        self.d.metrics.count(op, True)
        return result

    def _schedule(self, p: _Pass, klass: DatabaseClassSpec | None) -> Result | None:
        interval = klass.rotation.interval if klass is not None and klass.rotation is not None else None
        if not interval or p.status.provisioned_at is None:
            return None
        last = p.status.last_rotation_time or p.status.provisioned_at
        delay = (last + interval - self.d.clock()).total_seconds()
        return Result(requeue_after=max(1.0, delay))

    async def _remove_rotate_annotation(self, p: _Pass, value: str) -> None:
        if p.db.metadata.annotations.get(ROTATE_ANNOTATION) == value:
            await self._patch_metadata(p, {"annotations": {ROTATE_ANNOTATION: None}})

    # -- create --------------------------------------------------------------------------------------

    async def _provision(self, p: _Pass) -> Result | None:
        try:
            plan = self.d.admission.admit(p.db, strict=True)
            plan.check_secret_format()
            plan.operation("create")  # renders the inputs now: a template error must stop us before the DBMS
        except AdmissionError as exc:
            await self._report(p, exc.reason, exc.message)
            return None  # a change to the Database, class, config or namespace brings us back
        name = self._secret_name(p)
        secret = await self._read_secret(p, name)
        state = inspect_secret(secret, p.raw)
        if state.exists and not state.owned:
            await self._secret_conflict(p, name)
            return Result(requeue_after=CONFLICT_RECHECK)
        await self._ensure_finalizer(p)  # before the first DBMS call: nothing we create is ever orphaned
        try:
            result = await self._call(p, plan, "create")
        except _CallFailed as exc:
            await self._fail(p, exc.reason, exc.message)
        # Recorded even if storing the Secret fails below: from now on only rotate may issue credentials.
        p.status.provisioned_at = self.d.clock()
        p.status.endpoint = plan.endpoint
        p.status.secret_name = name
        written = await self._store_credentials(p, plan, secret, result, "created")
        # One Event for the outcome (database and Secret): Events are a third of a storm's API writes.
        self._event(
            p, reasons.CREATED, f"database created on endpoint {plan.endpoint}; Secret {name} {written}"
        )
        p.status.credential_generation = (p.status.credential_generation or 0) + 1
        annotation = p.db.metadata.annotations.get(ROTATE_ANNOTATION)
        if annotation and annotation != "true":
            p.status.rotation_token = annotation  # fresh credentials satisfy the token that came with them
        p.set_ready("True", reasons.PROVISIONED, f"database created on endpoint {plan.endpoint}; "
                    f"credentials in Secret {name}")  # fmt: skip
        await self._flush(p)
        if annotation is not None and annotation in ("true", ""):
            await self._remove_rotate_annotation(p, annotation)
        return self._schedule(p, plan.klass)

    async def _store_credentials(
        self, p: _Pass, plan: Plan, secret: JsonDict | None, result: Mapping[str, str], what: str
    ) -> str:
        """Render and write the Secret after a successful create or rotate; "created" or "updated".

        The DBMS has already issued the credentials, so a failure here leaves Ready=False with reason
        SecretTemplateError or SecretWriteFailed, and that reason is itself a rotation trigger: the next
        attempt obtains fresh credentials by rotating, never by creating again.
        """
        name = self._secret_name(p)
        try:
            data = plan.secret_data(result)
        except SecretRenderError as exc:
            await self._fail(
                p,
                reasons.SECRET_TEMPLATE_ERROR,
                f"credentials were {what} but Secret {name} cannot be rendered: {exc}; fix the class, "
                "the next attempt rotates to obtain fresh credentials",
            )
        try:
            written = await self._write_secret(p, secret, data)
        except ApiError as exc:
            if exc.is_already_exists or (exc.is_conflict and secret is None):
                await self._secret_conflict(p, name)
                raise Failure(f"{reasons.SECRET_CONFLICT}: Secret {name}") from None
            await self._fail(
                p,
                reasons.SECRET_WRITE_FAILED,
                f"credentials were {what} but Secret {name} could not be written ({exc.status} {exc.reason}); "
                "the next attempt rotates to obtain fresh credentials",
            )
        return written

    async def _secret_conflict(self, p: _Pass, name: str) -> None:
        await self._report(
            p,
            reasons.SECRET_CONFLICT,
            f"Secret {name} exists and is not owned by this Database; it is never overwritten. Delete it, "
            "or create the Database under another name or spec.secretName",
        )

    # -- steady state and rotation -------------------------------------------------------------------

    @staticmethod
    def _secret_usable(p: _Pass, state: SecretState) -> bool:
        """Does our Secret hold the credentials the DBMS last issued (so Ready may stay True)?"""
        ready = p.ready()
        stale = ready is not None and ready[1] in STALE_SECRET_REASONS
        return state.exists and state.owned and not state.drifted and not stale

    def _rotation_reasons(self, p: _Pass, state: SecretState, klass: DatabaseClassSpec | None) -> list[str]:
        why: list[str] = []
        annotation = p.db.metadata.annotations.get(ROTATE_ANNOTATION)
        name = self._secret_name(p)
        if annotation is not None and annotation in ("true", ""):
            why.append(f'annotation {ROTATE_ANNOTATION}="{annotation}"')
        elif annotation and annotation != p.status.rotation_token:
            why.append(f"annotation {ROTATE_ANNOTATION} has a new value")
        if not state.exists:
            why.append(f"Secret {name} is missing")
        elif state.owned and state.drifted:
            why.append(f"Secret {name} was modified")
        ready = p.ready()
        if ready is not None and ready[1] in STALE_SECRET_REASONS:
            why.append("the last credentials issued could not be stored")
        interval = klass.rotation.interval if klass is not None and klass.rotation is not None else None
        if interval and p.status.provisioned_at is not None:
            last = p.status.last_rotation_time or p.status.provisioned_at
            if self.d.clock() >= last + interval - timedelta(milliseconds=500):
                why.append("the rotation interval elapsed")
        return why

    async def _maintain(self, p: _Pass) -> Result | None:
        name = self._secret_name(p)
        secret = await self._read_secret(p, name)
        state = inspect_secret(secret, p.raw)
        await self._ensure_finalizer(p)
        plan: Plan | None = None
        blocked: AdmissionError | None = None
        try:
            plan = self.d.admission.admit(p.db, strict=False)
        except AdmissionError as exc:
            blocked = exc
        if state.exists and not state.owned:
            await self._secret_conflict(p, name)
            return Result(requeue_after=CONFLICT_RECHECK)
        why = self._rotation_reasons(p, state, plan.klass if plan is not None else None)
        secret_ok = self._secret_usable(p, state)
        if why:
            if blocked is not None or plan is None:
                assert blocked is not None
                self.d.metrics.rotation_failed(p.key, True)
                await self._report(
                    p,
                    blocked.reason,
                    f"cannot rotate ({'; '.join(why)}): {blocked.message}",
                    ready="True" if secret_ok else "False",
                )
                return None
            return await self._rotate(p, plan, secret, state, why)
        if state.needs_metadata_repair and secret is not None:
            patch = metadata_repair_patch(secret, p.raw)
            if patch is not None:
                await self.d.client.patch(
                    SECRETS.path(p.namespace, name), patch, "merge", field_manager=self.d.field_manager
                )
                self._event(p, reasons.SECRET_REPAIRED, f"labels of Secret {name} restored")
        ready = p.ready()
        if ready is None or ready[0] != "True" or ready[1] not in (reasons.PROVISIONED, reasons.ROTATED):
            p.set_ready("True", reasons.PROVISIONED, f"database available on endpoint {p.status.endpoint}; "
                        f"credentials in Secret {name}")  # fmt: skip
        self.d.metrics.rotation_failed(p.key, False)
        await self._flush(p)
        return self._schedule(p, plan.klass if plan is not None else None)

    async def _rotate(
        self, p: _Pass, plan: Plan, secret: JsonDict | None, state: SecretState, why: list[str]
    ) -> Result | None:
        name = self._secret_name(p)
        secret_ok = self._secret_usable(p, state)
        annotation = p.db.metadata.annotations.get(ROTATE_ANNOTATION)
        log.info("%s: rotating credentials: %s", p.key, "; ".join(why), extra={"database": p.key})
        try:
            result = await self._call(p, plan, "rotate", "; ".join(why))
        except AdmissionError as exc:  # no rotate procedure, or its inputs do not render
            self.d.metrics.rotation_failed(p.key, True)
            await self._report(
                p, exc.reason, f"cannot rotate ({'; '.join(why)}): {exc.message}",
                ready="True" if secret_ok else "False",
            )  # fmt: skip
            return None
        except _CallFailed as exc:
            self.d.metrics.rotation_failed(p.key, True)
            kept = " The Secret still holds the previous credentials." if secret_ok else ""
            await self._fail(p, exc.reason, exc.message + kept, ready="True" if secret_ok else "False")
        if not state.exists:
            secret = None
        # What triggered the rotation is marked done only once the Secret holds the new credentials; a
        # failed write leaves the trigger (and the failure reason, itself a trigger) for the next attempt.
        written = await self._store_credentials(p, plan, secret, result, "rotated")
        p.status.last_rotation_time = self.d.clock()
        p.status.credential_generation = (p.status.credential_generation or 0) + 1
        if annotation and annotation != "true":
            p.status.rotation_token = annotation
        self.d.metrics.rotation_failed(p.key, False)
        p.set_ready("True", reasons.ROTATED, f"credentials rotated ({'; '.join(why)}); Secret {name} updated")
        await self._flush(p)
        self._event(p, reasons.ROTATED, f"credentials rotated: {'; '.join(why)}; Secret {name} {written}")
        if annotation is not None and annotation in ("true", ""):
            await self._remove_rotate_annotation(p, annotation)
        return self._schedule(p, plan.klass)

    # -- delete --------------------------------------------------------------------------------------

    async def _finalize(self, p: _Pass) -> Result | None:
        if FINALIZER not in p.db.metadata.finalizers:
            self.d.metrics.forget(p.key)
            return None
        name = self._secret_name(p)
        if p.db.spec.deletion_policy == "Retain":
            secret = await self._read_secret(p, name)
            if secret is not None and inspect_secret(secret, p.raw).owned:
                patch = release_patch(secret, p.db.metadata.uid or "")
                if patch is not None:
                    await self.d.client.patch(
                        SECRETS.path(p.namespace, name), patch, "merge", field_manager=self.d.field_manager
                    )
            event = p.raw  # the object as it was: the Event outlives the finalizer removal below
            await self._remove_finalizer(p)
            self.d.recorder.normal(
                event,
                reasons.RETAINED,
                f"deletionPolicy Retain: the database on endpoint {p.status.endpoint or p.db.spec.endpoint} "
                f"and Secret {name} were kept",
            )
            p.finished = True
            self.d.metrics.forget(p.key)
            return None
        # No "Deleting" status write first: the deletionTimestamp already shows it (Terminating), and a
        # failure is reported as DeleteFailed; the extra write was a third of a delete's API cost.
        try:
            plan = self.d.admission.admit(p.db, strict=False)
            await self._call(p, plan, "delete")
        except AdmissionError as exc:
            self.d.metrics.delete_failing(p.key, True)
            await self._fail(
                p,
                reasons.DELETE_FAILED,
                f"cannot run the delete procedure: {exc.message}. Fix the configuration, or set "
                "spec.deletionPolicy to Retain to let the object go and keep the database",
            )
        except _CallFailed as exc:
            self.d.metrics.delete_failing(p.key, True)
            await self._fail(p, reasons.DELETE_FAILED, exc.message)
        self.d.metrics.delete_failing(p.key, False)
        self._event(p, reasons.DELETED, f"database deleted on endpoint {plan.endpoint}")
        secret = await self._read_secret(p, name)
        if secret is not None and inspect_secret(secret, p.raw).owned:
            uid = (secret.get("metadata") or {}).get("uid")
            try:
                await self.d.client.delete(
                    SECRETS.path(p.namespace, name), preconditions={"uid": uid} if uid else None
                )
            except ApiError as exc:
                if not exc.is_not_found:
                    raise
        await self._remove_finalizer(p)
        p.finished = True
        self.d.metrics.forget(p.key)
        return None


class _Restart(Exception):
    """The object changed under us; decide again from the fresh copy."""


class _CallFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
