"""The one-shot rotate request (`dbaasctl.io/rotate=true`): taken off once the rotation it asked for is
stored.

While the annotation is on, `status.rotationToken` "true" says it was honoured. Taking it off before the
rotation's status record makes that token unnecessary: the record then leaves it unset, and there is no
token to clear afterwards (one status write fewer per rotation). If the annotation cannot be taken off
then (the Database was edited during the call, the API server refused), the token is recorded as before
and the `RemoveAnnotation` step takes the annotation off later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dbaasctl.controller.database.decide import TRUE_TOKEN
from dbaasctl.controller.database.observe import rotate_annotation

if TYPE_CHECKING:
    from dbaasctl.controller.database.act import Ctx

__all__ = ["honoured_token", "remove_annotation", "take_off_before_record"]

log = logging.getLogger("dbaasctl.controller.database")


async def take_off_before_record(c: Ctx) -> None:
    """One attempt, fenced by the resourceVersion this pass holds: an edit made during the call wins,
    and the token fallback keeps the request from being honoured twice."""
    p = c.p
    pending = p.status.pending_operation
    if pending is None or pending.rotation_token != TRUE_TOKEN:
        return
    value, key = rotate_annotation(p.db)
    if key is None or value not in ("true", ""):
        return
    try:
        fresh = await c.w.patch_metadata(p.raw, {"annotations": {key: None}})
    except Exception as exc:  # any refusal or transport failure: the token records the request instead
        log.debug(
            "%s: rotate annotation left for later (%s)", p.key, type(exc).__name__, extra={"database": p.key}
        )
        return
    p.adopt(fresh, keep_status=True)


def honoured_token(c: Ctx) -> str | None:
    """The rotationToken the record of this rotation stores: "true" only while the annotation is still on."""
    pending = c.p.status.pending_operation
    if pending is None or not pending.rotation_token:
        return c.p.status.rotation_token
    if pending.rotation_token == TRUE_TOKEN and rotate_annotation(c.p.db)[0] not in ("true", ""):
        return None  # taken off: nothing left to mark as honoured
    return pending.rotation_token


async def remove_annotation(c: Ctx) -> None:
    """The step: the annotation "true" was honoured earlier (status.rotationToken says so); take it off."""
    p = c.p
    _, key = rotate_annotation(p.db)
    if key is not None:
        p.adopt(await c.w.patch_metadata(p.raw, {"annotations": {key: None}}))
    p.status.rotation_token = None
    p.adopt(await c.w.record_status(p.raw, p.status))
