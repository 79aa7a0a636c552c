"""Waiting and stopping for the manager: await-unless-stopped, the bounded drain, cancelling tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from dbaasctl.kube.controller import Controller

log = logging.getLogger(__name__)

T = TypeVar("T")


async def until_event(
    aw: Awaitable[T], stop: asyncio.Event, timeout: float | None = None
) -> tuple[bool, T | None]:
    """Await `aw` unless `stop` is set (or `timeout` passes) first; (True, result) if it finished."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task in done:
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False, None


async def drain(
    controllers: Sequence[Controller], budget: float, force: asyncio.Event, hold: asyncio.Task[None] | None
) -> None:
    """Let in-flight reconciles finish within `budget`; cut short by `force` (a second signal) or by
    losing the lease meanwhile (we keep renewing while draining, and if that fails a standby may start:
    nothing may keep running then)."""
    if not controllers:
        return
    stopping: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.gather(*(c.stop(budget) for c in controllers))
    )
    forced: asyncio.Future[Any] = asyncio.ensure_future(force.wait())
    waiters: set[asyncio.Future[Any]] = {stopping, forced}
    if hold is not None:
        waiters.add(hold)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        forced.cancel()
    if not stopping.done():
        if hold is not None and hold.done():
            log.error("leadership lost while draining; cancelling in-flight work")
        await asyncio.gather(*(c.abort() for c in controllers))
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel and await every task; whatever they raise on the way out is theirs to have logged."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
