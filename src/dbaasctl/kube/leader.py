"""Leader election on a coordination.k8s.io/v1 Lease, client-go's algorithm with its split-brain fixes.

- Candidates never trust timestamps in the Lease, only their own **monotonic** clock at the moment they
  saw the record change; a holder is considered alive until `observed + leaseDurationSeconds`.
- Every write carries the resourceVersion it read, so two racing candidates get one winner and one 409.
- The leader renews every `retry_period`; a renew round may retry until `renew_deadline`, and **every
  HTTP call is bounded by the time left** in that round, so a hung call cannot stretch leadership. It
  also stops at once when it sees another holder, or when its last renewal is older than the lease
  duration (an event-loop stall: someone else may lead by now).
- With the defaults (15 s / 10 s / 2 s) a leader that loses the API stops believing it leads at most
  ~12 s after its last renewal, while a standby waits ≥ 15 s after it saw that renewal: the ~3 s gap is
  the budget for cancelling work. Lengthen the lease, not the deadline, if work needs longer.
- Renewals are stamped with the time their request was **sent**, and `may_act(duration)` answers
  whether the lease still holds for a side effect of that length: the fencing check callers make right
  before an action that a new leader must never repeat.
- `release()` (graceful stop, after all guarded work ended) writes holder "" and leaseDurationSeconds=1,
  so a standby takes over within about one retry period instead of a full lease.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import LEASES, JsonDict
from dbaasctl.observability import metrics as m
from dbaasctl.primitives.clock import loop_time, micro_time

log = logging.getLogger(__name__)

#: Writes of the released Lease before giving up (each after a conflict re-read it).
RELEASE_ATTEMPTS = 3

_ERRORS = (ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError)


def default_identity() -> str:
    """`hostname_uuid`, like client-go: unique even for two processes on one host."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass
class LeaderElectionConfig:
    lease_name: str
    namespace: str
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    jitter_factor: float = 1.2

    def validate(self) -> None:
        if min(self.lease_duration, self.renew_deadline, self.retry_period) <= 0:
            raise ValueError("lease duration, renew deadline and retry period must be positive")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("lease duration must be greater than the renew deadline")
        if self.renew_deadline <= self.jitter_factor * self.retry_period:
            raise ValueError(f"renew deadline must be greater than {self.jitter_factor} x retry period")
        if not self.identity:
            raise ValueError("identity must not be empty")


class LeaderElector:
    """`await acquire()` → leader; `await hold()` returns when leadership is lost; `release()` on stop."""

    def __init__(
        self,
        client: KubeApi,
        config: LeaderElectionConfig,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        config.validate()
        self.client = client
        self.config = config
        self.path = LEASES.path(config.namespace, config.lease_name)
        self._clock = clock
        self._lease: JsonDict | None = None  # last Lease we wrote or read
        self._observed_spec: JsonDict | None = None
        self._observed_at = 0.0
        self._leader = False
        # When the last successful write was *sent*: the server applied it no earlier, so a standby's
        # lease clock started no earlier either. Stamping the answer's arrival would overstate the lease
        # by the response time.
        self._last_renew: float | None = None
        self._write_sent = 0.0
        self._gauge = m.gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 "
            "indicates master. 'name' is the string used to identify the lease.",
            ("name",),
            registry,
        ).labels(name=config.lease_name)
        self._gauge.set(0)

    @property
    def identity(self) -> str:
        return self.config.identity

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def lease_valid_until(self) -> float | None:
        """Until when (on this elector's clock) no one else can lead: the last renewal's send time plus
        the lease duration. None when not leading."""
        if not self._leader or self._last_renew is None:
            return None
        return self._last_renew + self.config.lease_duration

    def may_act(self, duration: float = 0.0) -> bool:
        """Fencing for side effects: True only if we lead and the lease still holds `duration` seconds
        from now. Ask right before an action that must never run twice (a stalled leader whose lease
        lapsed would otherwise act alongside its successor); `duration` is how long the action may take."""
        valid_until = self.lease_valid_until
        return valid_until is not None and self._clock() + duration < valid_until

    @property
    def observed_holder(self) -> str:
        return str((self._observed_spec or {}).get("holderIdentity") or "")

    # -- protocol ------------------------------------------------------------------------------------

    def _observe(self, lease: JsonDict) -> None:
        spec = dict(lease.get("spec") or {})
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = self._clock()

    def _desired_spec(self, old: JsonDict | None) -> JsonDict:
        now = micro_time()
        old = old or {}
        held_by_us = old.get("holderIdentity") == self.identity
        transitions = int(old.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.config.lease_duration)),
            "acquireTime": old.get("acquireTime") if held_by_us and old.get("acquireTime") else now,
            "renewTime": now,
            "leaseTransitions": transitions if held_by_us or not old else transitions + 1,
        }

    async def _write(self, lease: JsonDict, spec: JsonDict) -> JsonDict:
        self._write_sent = self._clock()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": lease["metadata"],
            "spec": spec,
        }
        return await self.client.replace(self.path, body)

    async def _try_acquire_or_renew(self) -> bool:
        # Fast path: the leader updates from its cached copy; a 409 falls through to a fresh read.
        if self._leader and self._lease is not None:
            try:
                written = await self._write(self._lease, self._desired_spec(self._lease.get("spec")))
            except ApiError as exc:
                if not exc.is_conflict:
                    raise
            else:
                self._lease = written
                self._observe(written)
                return True
        try:
            lease = await self.client.get(self.path)
        except ApiError as exc:
            if not exc.is_not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.config.lease_name, "namespace": self.config.namespace},
                "spec": self._desired_spec(None),
            }
            try:
                self._write_sent = self._clock()
                created = await self.client.create(LEASES.path(self.config.namespace), body)
            except ApiError as create_exc:
                if create_exc.is_conflict:
                    return False
                raise
            self._lease = created
            self._observe(created)
            return True
        self._lease = lease
        self._observe(lease)
        spec = self._observed_spec or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        if holder and holder != self.identity and self._clock() < self._observed_at + duration:
            return False
        try:
            written = await self._write(lease, self._desired_spec(spec))
        except ApiError as exc:
            if exc.is_conflict:
                return False
            raise
        self._lease = written
        self._observe(written)
        return True

    async def _attempt(self, budget: float) -> bool:
        try:
            async with asyncio.timeout(budget):
                return await self._try_acquire_or_renew()
        except _ERRORS as exc:
            log.warning("lease %s: %s", self.config.lease_name, exc if str(exc) else type(exc).__name__)
            return False

    # -- lifecycle -----------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Block until we lead (cancel to give up)."""
        cfg = self.config
        log.info("lease %s/%s: %s is trying to acquire", cfg.namespace, cfg.lease_name, self.identity)
        announced = ""
        while True:
            if await self._attempt(cfg.renew_deadline):
                self._leader = True
                self._last_renew = self._write_sent
                self._gauge.set(1)
                log.info("lease %s/%s: %s became leader", cfg.namespace, cfg.lease_name, self.identity)
                return
            if self.observed_holder and self.observed_holder != announced:
                announced = self.observed_holder
                log.info("lease %s/%s: held by %s", cfg.namespace, cfg.lease_name, announced)
            await asyncio.sleep(cfg.retry_period * (1.0 + random.random() * cfg.jitter_factor))

    async def hold(self) -> None:
        """Renew until leadership is lost; then return (the caller must stop all guarded work)."""
        # Cancelling this (graceful stop) keeps the leadership state, so `release()` can still write.
        while True:
            await asyncio.sleep(self.config.retry_period)
            if not await self._renew_round():
                self._lost()
                return

    async def _renew_round(self) -> bool:
        cfg = self.config
        start = self._clock()
        if self._last_renew is not None and start - self._last_renew > cfg.lease_duration:
            log.error(
                "lease %s: last renewal %.1fs ago (event loop stalled?)",
                cfg.lease_name,
                start - self._last_renew,
            )
            return False
        deadline = start + cfg.renew_deadline
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                log.error("lease %s: could not renew within %.0fs", cfg.lease_name, cfg.renew_deadline)
                return False
            if await self._attempt(remaining):
                self._last_renew = self._write_sent
                return True
            holder = self.observed_holder
            if holder and holder != self.identity:
                log.error("lease %s: taken over by %s", cfg.lease_name, holder)
                return False
            remaining = deadline - self._clock()
            if remaining <= 0:
                continue
            await asyncio.sleep(min(cfg.retry_period, remaining))

    def _lost(self) -> None:
        self._leader = False
        self._gauge.set(0)
        log.error(
            "lease %s/%s: leadership lost by %s", self.config.namespace, self.config.lease_name, self.identity
        )

    async def release(self) -> bool:
        """Give the lease up now (only after every guarded task has stopped). True if written."""
        cfg = self.config
        if not self._leader or self._lease is None:
            return False
        self._leader = False
        self._gauge.set(0)
        lease: JsonDict = self._lease

        async def write_released() -> bool:
            nonlocal lease
            spec: Any = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return False
            now = micro_time()
            released = {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": int(spec.get("leaseTransitions") or 0),
            }
            try:
                self._lease = await self._write(lease, released)
            except ApiError as exc:
                if exc.is_conflict:
                    lease = await self.client.get(self.path)  # still ours? the next attempt checks
                raise
            return True

        # A conflict means someone wrote the Lease since we read it: re-read and try again, a few times.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(RELEASE_ATTEMPTS),
            retry=retry_if_exception(lambda exc: isinstance(exc, ApiError) and exc.is_conflict),
            reraise=True,
        )
        try:
            async with asyncio.timeout(cfg.renew_deadline):
                async for attempt in retrying:
                    with attempt:
                        if not await write_released():
                            return False
            log.info("lease %s/%s: released by %s", cfg.namespace, cfg.lease_name, self.identity)
            return True
        except _ERRORS as exc:
            log.warning("lease %s: release failed: %s", cfg.lease_name, exc)
        return False

    def check_renewing(self, slack: float = 20.0) -> str | None:
        """Liveness: fails only for a leader whose renewals stopped (a deadlocked leader, kubernetes#70819)."""
        if not self._leader or self._last_renew is None:
            return None
        age = self._clock() - self._last_renew
        if age > self.config.lease_duration + slack:
            return f"lease not renewed for {age:.0f}s"
        return None
