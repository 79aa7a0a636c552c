"""Watching Databases and timestamping, per object, the moment a condition first holds.

Latency is measured where a user would see it: on the API server's watch stream, at the moment the event
carrying the state (Ready, a new credentialGeneration, the deletion) arrives here. The same watcher
serves every subject, so the operator, the single-worker baseline and the raw baseline are timed alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from bench.api import DATABASES, Api, Gone, JsonDict

log = logging.getLogger(__name__)

#: Given the latest object (None once deleted), has this Database reached the awaited state?
Predicate = Callable[[JsonDict | None], bool]


class Expectation:
    def __init__(self, names: Iterable[str], predicate: Predicate) -> None:
        self.pending = set(names)
        self.total = len(self.pending)
        self.predicate = predicate
        #: name → time.monotonic() of the event that satisfied the predicate.
        self.done: dict[str, float] = {}
        self._complete = asyncio.Event()
        if not self.pending:
            self._complete.set()

    def offer(self, name: str, obj: JsonDict | None, at: float) -> None:
        if name in self.pending and self.predicate(obj):
            self.pending.discard(name)
            self.done[name] = at
            if not self.pending:
                self._complete.set()

    async def wait(self, timeout: float) -> bool:
        """True when every object got there within `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._complete.wait()
        return not self.pending


class DatabaseWatcher:
    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.path = DATABASES.format(ns=namespace)
        self.objects: dict[str, JsonDict] = {}
        self._expectations: list[Expectation] = []
        self._task: asyncio.Task[None] | None = None
        self._rv = ""
        self.relists = 0

    async def start(self) -> None:
        await self._list()
        self._task = asyncio.create_task(self._run(), name=f"watch {self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def expect(self, names: Iterable[str], predicate: Predicate) -> Expectation:
        exp = Expectation(names, predicate)
        now = time.monotonic()
        for name in list(exp.pending):
            exp.offer(name, self.objects.get(name), now)
        self._expectations.append(exp)
        return exp

    def _offer(self, name: str, obj: JsonDict | None, at: float) -> None:
        for exp in self._expectations:
            exp.offer(name, obj, at)
        self._expectations = [e for e in self._expectations if e.pending]

    async def _list(self) -> None:
        listing = await self.api.get(self.path)
        self._rv = listing["metadata"]["resourceVersion"]
        now = time.monotonic()
        seen = {}
        for item in listing.get("items") or []:
            seen[item["metadata"]["name"]] = item
        for name in set(self.objects) - set(seen):
            del self.objects[name]
            self._offer(name, None, now)
        for name, item in seen.items():
            self.objects[name] = item
            self._offer(name, item, now)

    async def _run(self) -> None:
        while True:
            try:
                if not self._rv:
                    await self._list()
                async for event in self.api.watch(self.path, self._rv):
                    at = time.monotonic()
                    obj = event["object"]
                    self._rv = obj["metadata"].get("resourceVersion") or self._rv
                    if event["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if event["type"] == "DELETED":
                        self.objects.pop(name, None)
                        self._offer(name, None, at)
                    else:
                        self.objects[name] = obj
                        self._offer(name, obj, at)
            except Gone:
                self.relists += 1
                self._rv = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped stream or a refused list: resume, relist if needed
                log.warning("watch on %s broke (%s); resuming", self.path, type(exc).__name__)
                await asyncio.sleep(0.5)


# -- predicates ------------------------------------------------------------------------------------------


def ready_condition(obj: JsonDict | None) -> dict[str, str] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return None


def is_ready(obj: JsonDict | None) -> bool:
    """Provisioned and Ready=True: the credentials Secret is written."""
    cond = ready_condition(obj)
    status = (obj or {}).get("status") or {}
    return cond is not None and cond.get("status") == "True" and bool(status.get("provisionedAt"))


def generation(obj: JsonDict | None) -> int:
    return int(((obj or {}).get("status") or {}).get("credentialGeneration") or 0)


def rotated_past(baseline: dict[str, int]) -> Predicate:
    """credentialGeneration moved past its value before the storm and the rotate annotation is gone."""

    def check(obj: JsonDict | None) -> bool:
        if obj is None:
            return False
        name = obj["metadata"]["name"]
        annotations = obj["metadata"].get("annotations") or {}
        return generation(obj) > baseline.get(name, 0) and "dbaasctl.io/rotate" not in annotations

    return check


def is_gone(obj: JsonDict | None) -> bool:
    return obj is None
