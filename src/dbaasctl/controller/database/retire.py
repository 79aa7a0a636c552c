"""Act, second phase of a two-phase rotation: call retire when due, and record that it ran.

The record of a retire is, in this order: delete the previous Secret (the durable evidence: absent while
the retire intent is still in status means retire succeeded), then clear the intent and
`previousCredentialsRetireAt` in status. A process that saw the success but could not record it keeps
that in memory, so it never calls retire again; after a restart the intent left in status makes it call
retire once more (retire procedures must be idempotent, as the samples are).
"""

from __future__ import annotations

import logging

from dbaasctl.controller import reasons
from dbaasctl.controller.admission import Plan
from dbaasctl.controller.database.act import Ctx, Exit, fence_intent, fenced
from dbaasctl.controller.database.dbms import call
from dbaasctl.controller.database.decide import secret_usable
from dbaasctl.controller.database.model import Observed
from dbaasctl.controller.database.previous import previous_secret_name
from dbaasctl.kube.controller import Result

__all__ = ["queued", "retire", "retired"]

log = logging.getLogger("dbaasctl.controller.database")


async def retire(c: Ctx, plan: Plan, previous: dict[str, str], o: Observed) -> Exit | None:
    p = c.p
    if (stop := fenced(c, plan)) is not None:
        return stop
    await fence_intent(c, "retire")
    result = await call(c.d.registry, c.d.metrics, p.key, plan, "retire", c.masks(), previous)
    if not isinstance(result, dict):
        if result.no_effect:
            p.status.pending_operation = None
        usable = secret_usable(o)
        return c.fail(
            result.reason,
            result.message + "; the previous credentials stay valid until retire succeeds",
            ready="True" if usable else "False",
        )
    c.memory.reset(p)
    c.memory.retired.add(c.memory.ident(p))  # first: whatever fails below, retire is not called again
    return await record_retired(c, called=True)


async def retired(c: Ctx, *, called: bool) -> Exit | None:
    """Record a retire that ran (its record was cut short), or drop previous credentials the class no
    longer retires (they are left to the DBA)."""
    return await record_retired(c, called=called)


async def record_retired(c: Ctx, *, called: bool) -> Exit | None:
    p = c.p
    await c.w.delete_secret(p.namespace, previous_secret_name(p.secret_name), None)
    p.status.previous_credentials_retire_at = None
    pending = p.status.pending_operation
    if pending is not None and pending.name == "retire":
        p.status.pending_operation = None
    endpoint = p.status.endpoint or p.db.spec.endpoint
    if called:
        note = f"the previous credentials were retired on endpoint {endpoint}"
    else:
        note = (
            "the class no longer declares a retire procedure: the previous credentials were not retired "
            "and are left to the DBA"
        )
    c.event(reasons.RETIRED, note, warning=not called)
    ready = p.ready()
    if ready is not None and ready[0] == "True" and ready[1] in (reasons.ROTATED, reasons.RETIRE_FAILED):
        # The message said until when the previous credentials work; now they do not.
        p.set_ready("True", reasons.ROTATED, f"credentials rotated, in Secret {p.secret_name}; {note}")
    log.info("%s: %s", p.key, note, extra={"database": p.key, "endpoint": endpoint})
    p.adopt(await c.w.record_status(p.raw, p.status))
    c.memory.retired.discard(c.memory.ident(p))
    return None


def queued(c: Ctx, seconds: float, why: tuple[str, ...], ready: str, o: Observed) -> Exit:
    p = c.p
    retire_at = p.status.previous_credentials_retire_at
    when = retire_at.isoformat() if retire_at is not None else "soon"
    message = (
        f"rotation ({'; '.join(why)}) queued: the previous credentials are retired first, at {when}; "
        f"Secret {p.secret_name} "
        + ("holds the current credentials" if ready == "True" else "does not hold the current credentials")
    )
    if p.ready() != (ready, reasons.ROTATION_QUEUED):
        c.event(reasons.ROTATION_QUEUED, message)
    p.set_ready("True" if ready == "True" else "False", reasons.ROTATION_QUEUED, message)
    return Exit(Result(requeue_after=seconds))
