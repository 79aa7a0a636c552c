"""Act: perform the one step decide chose, and record what it did the moment it did it.

Each handler returns an `Exit` (the pass ends with that result) or None (the object or the Secret moved
on: observe and decide again in the same pass). See the package docstring for the rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from dbaasctl.api.database import FINALIZER, PendingOperation
from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Plan, SecretRenderError
from dbaasctl.controller.database import rotate_request
from dbaasctl.controller.database.dbms import CallFailed, backoff, call
from dbaasctl.controller.database.decide import TRUE_TOKEN
from dbaasctl.controller.database.model import Held
from dbaasctl.controller.database.observe import Pass, rotate_annotation
from dbaasctl.controller.database.previous import previous_secret_name, superseded_data
from dbaasctl.controller.database.rollout import roll_out
from dbaasctl.controller.database.writes import SecretConflict, ServerCopy, Writer
from dbaasctl.controller.secrets import decode_data, inspect_secret, metadata_repair_patch, release_patch
from dbaasctl.kube.controller import Result
from dbaasctl.kube.errors import describe_failure
from dbaasctl.kube.resources import JsonDict

if TYPE_CHECKING:
    from dbaasctl.controller.database.memory import Memory
    from dbaasctl.controller.database.reconciler import Dependencies

log = logging.getLogger("dbaasctl.controller.database")

__all__ = ["Ctx", "Exit"]


#: Seconds before a failed roll-out of workloads is tried again.
ROLLOUT_RETRY = 30.0


@dataclass(frozen=True)
class Exit:
    result: Result | None


class Ctx:
    """What a handler needs: the dependencies, the writer, this pass and the reconciler's memory."""

    def __init__(
        self,
        deps: Dependencies,
        writer: Writer,
        p: Pass,
        memory: Memory,
        secret: JsonDict | None = None,
        *,
        fresh: bool = False,
    ) -> None:
        self.d = deps
        self.w = writer
        self.p = p
        self.memory = memory
        self.secret = secret
        #: `secret` was read from the API server in this step (a cache miss always is), not the cache.
        self.fresh = fresh

    def event(self, reason: str, note: str, *, warning: bool = False) -> None:
        (self.d.recorder.warning if warning else self.d.recorder.normal)(self.p.raw, reason, note)

    def fail(
        self, reason: str, message: str, *, ready: Literal["True", "False", "Unknown"] = "False"
    ) -> Exit:
        """A failed DBMS call: visible on Ready and as an Event; back off from seconds, not milliseconds."""
        p = self.p
        log.info("%s: %s: %s", p.key, reason, message, extra={"database": p.key, "reason": reason})
        p.set_ready(ready, reason, message)
        self.event(reason, message, warning=True)
        failures = self.memory.failed(p)
        return Exit(Result(requeue_after=backoff(failures), failed=True))

    def masks(self) -> list[str]:
        """Every credential of this Database we know of: a DBMS error text may echo any of them."""
        held = self.memory.held_for(self.p)
        values = list(held.result.values()) if held is not None else []
        if self.secret is not None and inspect_secret(self.secret, self.p.raw).owned:
            values += [v for v in decode_data(self.secret).values() if v]
        return values


async def fence_intent(c: Ctx, name: Literal["create", "rotate", "retire"]) -> None:
    """Finalizer first, then the intent marker, both only if the Database is still what we decided on
    (a 409 here costs nothing: the pass decides again)."""
    p = c.p
    if FINALIZER not in p.db.metadata.finalizers:
        fresh = await c.w.patch_metadata(p.raw, {"finalizers": [*p.db.metadata.finalizers, FINALIZER]})
        p.adopt(fresh)
    value, _ = rotate_annotation(p.db)
    token = TRUE_TOKEN if value in ("true", "") else value
    if name == "retire":
        token = None  # retire honours no annotation: a queued rotation must still see it
    p.status.pending_operation = PendingOperation(name=name, started_at=c.d.clock(), rotation_token=token)
    if p.status.provisioned_at is None:
        p.status.endpoint = p.db.spec.endpoint
        p.status.secret_name = p.secret_name
    fresh = await c.w.fence_status(p.raw, p.status)
    p.adopt(fresh)


#: Seconds the leader lease must still hold when a procedure call starts.
FENCE_MARGIN = 2.0


def fenced(c: Ctx, plan: Plan) -> Exit | None:
    """Leader fencing: no call starts once our lease may have lapsed (a stalled leader would otherwise
    call procedures alongside its successor). The lease is only asked to hold for `FENCE_MARGIN`, the
    time to send the call: a call outlasting the lease cannot be required, as operation timeouts are
    longer than lease durations. Not an error: come back shortly."""
    if c.d.may_act(FENCE_MARGIN):
        return None
    log.info("%s: not calling a procedure: the leader lease may expire first", c.p.key)
    return Exit(Result(requeue_after=1.0))


async def create(c: Ctx, plan: Plan) -> Exit | None:
    if (stop := fenced(c, plan)) is not None:
        return stop
    await fence_intent(c, "create")
    result = await call(c.d.registry, c.d.metrics, c.p.key, plan, "create", [])
    if isinstance(result, CallFailed):
        if result.no_effect:
            c.p.status.pending_operation = None  # nothing happened: spec may change again
        return c.fail(result.reason, result.message)
    c.memory.reset(c.p)
    held = Held("create", (c.p.status.credential_generation or 0) + 1, result)
    c.memory.hold(c.p, held)  # first: whatever fails below, these credentials are not lost
    return await store(c, plan, held)


async def rotate(c: Ctx, plan: Plan, why: tuple[str, ...], *, usable_before: bool) -> Exit | None:
    """`usable_before`: the Secret held working credentials when the pass decided to rotate."""
    p = c.p
    if (stop := fenced(c, plan)) is not None:
        return stop
    # An earlier rotate whose outcome was never seen may already have replaced the password: a later
    # call that failed without effect does not make the Secret's credentials known-good again.
    earlier_unknown = p.status.pending_operation is not None and p.status.pending_operation.name == "rotate"
    usable_before = usable_before and not earlier_unknown
    await fence_intent(c, "rotate")
    text = "; ".join(why)
    log.debug("%s: rotating credentials: %s", p.key, text, extra={"database": p.key})
    # Two-phase: the credentials in use stay valid until retire; rotate and retire inputs see them.
    previous = superseded_data(c.secret, p.raw) if plan.klass.grace_period is not None else None
    result = await call(c.d.registry, c.d.metrics, p.key, plan, "rotate", c.masks(), previous)
    if isinstance(result, CallFailed):
        if result.no_effect and not earlier_unknown:
            p.status.pending_operation = None
            kept = "; the Secret still holds the previous credentials" if usable_before else ""
            return c.fail(result.reason, result.message + kept, ready="True" if usable_before else "False")
        # The call may have changed the password (a timeout, a broken connection): neither True nor False.
        return c.fail(
            result.reason,
            result.message + "; the outcome is unknown, the Secret may hold credentials no longer valid",
            ready="Unknown" if usable_before else "False",
        )
    c.memory.reset(p)
    held = Held("rotate", (p.status.credential_generation or 0) + 1, result, text, previous)
    c.memory.hold(p, held)
    return await store(c, plan, held)


async def store(c: Ctx, plan: Plan, held: Held) -> Exit | None:
    """Write held credentials to the Secret, then the bookkeeping to status; the record of a call."""
    p = c.p
    now = c.d.clock()
    what = "created" if held.operation == "create" else "rotated"
    name = p.secret_name
    if held.operation == "create" and p.status.provisioned_at is None:
        p.status.provisioned_at = now
        p.status.endpoint = plan.endpoint
        p.status.secret_name = name
    failure: tuple[str, str] | None = None
    try:
        if held.previous is not None:  # first: retire must find them, whatever happens next
            await c.w.record_secret(p.raw, previous_secret_name(name), held.previous, held.generation - 1)
        # The step's read from the API server is the base of the write: no second GET of the Secret.
        read = ServerCopy(c.secret) if c.fresh else None
        written = await c.w.record_secret(
            p.raw, name, await plan.secret_data(held.result), held.generation, read=read
        )
    except SecretRenderError as exc:
        failure = (
            reasons.SECRET_TEMPLATE_ERROR,
            f"credentials were {what} but Secret {name} cannot be rendered: {exc}; fix the class, the "
            "operator writes them once it can",
        )
    except SecretConflict:
        failure = (reasons.SECRET_CONFLICT, f"credentials were {what} but Secret {name} is not ours")
    except Exception as exc:  # every API or transport failure, after the retries in place
        failure = (
            reasons.SECRET_WRITE_FAILED,
            f"credentials were {what} but Secret {name} could not be written ({describe_failure(exc)}); retrying",
        )
    if failure is not None:
        exit_ = c.fail(*failure)
        await c.w.record_status(p.raw, p.status)  # provisionedAt: from now on only rotate issues credentials
        return exit_
    c.memory.release(p)
    await rotate_request.take_off_before_record(c)
    p.status.credential_generation = held.generation
    p.status.rotation_token = rotate_request.honoured_token(c)
    p.status.pending_operation = None
    endpoint = p.status.endpoint or plan.endpoint
    if held.operation == "rotate":
        p.status.last_rotation_time = now
        if c.d.rollout_workloads:
            p.status.rolled_out_generation = held.generation - 1  # caught up by `rollout`
        grace = plan.klass.grace_period
        kept = ""
        if held.previous is not None and grace is not None:
            # From the moment the Secret was written, rounded up: status keeps whole seconds.
            retire_at = c.d.clock().replace(microsecond=0) + grace + timedelta(seconds=1)
            p.status.previous_credentials_retire_at = retire_at
            kept = f"; the previous credentials stay valid until {retire_at.isoformat()}"
        p.set_ready("True", reasons.ROTATED, f"credentials rotated ({held.why}); Secret {name} updated{kept}")
        c.event(reasons.ROTATED, f"credentials rotated: {held.why}; Secret {name} {written}{kept}")
        log.info("%s: credentials rotated on endpoint %s (%s)", p.key, endpoint, held.why,
                 extra={"database": p.key, "endpoint": endpoint})  # fmt: skip
    else:
        p.set_ready(
            "True",
            reasons.PROVISIONED,
            f"database created on endpoint {endpoint}; credentials in Secret {name}",
        )
        c.event(reasons.CREATED, f"database created on endpoint {endpoint}; Secret {name} {written}")
        log.info("%s: database created on endpoint %s (Secret %s)", p.key, endpoint, name,
                 extra={"database": p.key, "endpoint": endpoint})  # fmt: skip
    p.adopt(await c.w.record_status(p.raw, p.status))
    if held.operation == "rotate":
        return await rollout(c, held.generation)
    return None


async def rollout(c: Ctx, generation: int) -> Exit | None:
    """Roll the workloads that opted in (see `rollout`), then record it in rolledOutGeneration.

    Never a failed pass: the rotation stands. A failure is an Event and another try in ROLLOUT_RETRY
    seconds (decide's RollOut step, which also resumes a roll-out the operator stopped before).
    The record is fenced: a cached copy that lags our own writes must not be written back.
    """
    p = c.p
    if not c.d.rollout_workloads:
        return None
    done = await roll_out(c.d.client, c.d.field_manager, p.namespace, p.name, p.secret_name, generation)
    if done.rolled:
        c.event(reasons.ROLLED_OUT, f"credential generation {generation}: rolled {', '.join(done.rolled)}")
    if done.failed:
        c.event(reasons.ROLLOUT_FAILED, f"could not roll: {'; '.join(done.failed)}", warning=True)
        return Exit(Result(requeue_after=ROLLOUT_RETRY))
    if (p.status.rolled_out_generation or 0) < generation:
        p.status.rolled_out_generation = generation
        p.adopt(await c.w.fence_status(p.raw, p.status))
    return None


async def delete(c: Ctx, plan: Plan) -> Exit | None:
    p = c.p
    if (stop := fenced(c, plan)) is not None:
        return stop
    fresh = await c.w.get_database(p.namespace, p.name)  # fence: never act on a stale deletionPolicy
    if fresh["metadata"].get("resourceVersion") != p.raw["metadata"].get("resourceVersion"):
        p.adopt(fresh)
        return None
    result = await call(c.d.registry, c.d.metrics, p.key, plan, "delete", c.masks())
    if isinstance(result, CallFailed):
        return c.fail(reasons.DELETE_FAILED, result.message)
    c.memory.reset(p)
    c.memory.release(p)
    c.event(reasons.DELETED, f"database deleted on endpoint {plan.endpoint}")
    log.info("%s: database deleted on endpoint %s", p.key, plan.endpoint, extra={"database": p.key})
    p.status.deleted_at = c.d.clock()
    p.status.pending_operation = None
    p.set_ready("False", reasons.DELETED, f"database deleted on endpoint {plan.endpoint}; releasing")
    p.adopt(await c.w.record_status(p.raw, p.status))
    return None


async def release(c: Ctx, retain: bool, secret: JsonDict | None) -> Exit:
    p = c.p
    name = p.secret_name
    if secret is not None and inspect_secret(secret, p.raw).owned:
        if retain:
            patch = release_patch(secret, p.db.metadata.uid or "")
            if patch is not None:
                patch["metadata"].pop("resourceVersion", None)
                await c.w.secret_patch(p.namespace, name, patch)
        else:
            uid = (secret.get("metadata") or {}).get("uid")
            await c.w.delete_secret(p.namespace, name, str(uid) if uid else None)
    if p.status.previous_credentials_retire_at is not None or _intent(p) == "retire":
        await c.w.delete_secret(p.namespace, previous_secret_name(name), None)
    event = p.raw  # the object as it was: the Event outlives the finalizer removal below
    await c.w.patch_metadata(
        p.raw, {"finalizers": [f for f in p.db.metadata.finalizers if f != FINALIZER] or None}
    )
    p.gone = True
    if retain:
        endpoint = p.status.endpoint or p.db.spec.endpoint
        c.d.recorder.normal(
            event, reasons.RETAINED,
            f"deletionPolicy Retain: the database on endpoint {endpoint} and Secret {name} were kept",
        )  # fmt: skip
    return Exit(None)


async def repair_labels(c: Ctx, secret: JsonDict | None) -> Exit | None:
    p = c.p
    patch = metadata_repair_patch(secret, p.raw) if secret is not None else None
    if patch is not None:
        patch["metadata"].pop("resourceVersion", None)
        await c.w.secret_patch(p.namespace, p.secret_name, patch)
        c.event(reasons.SECRET_REPAIRED, f"labels of Secret {p.secret_name} restored")
    return None


def _intent(p: Pass) -> str | None:
    return p.status.pending_operation.name if p.status.pending_operation is not None else None
