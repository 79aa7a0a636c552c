"""A Hypothesis state machine over random interleavings of user edits, rotations, Secret deletions,
Database deletion, API and DBMS failures, operator crashes and informers serving an older copy (as after
a watch outage), with reconcile passes in between.

After every step: Ready=True only while the Secret holds what the DBMS accepts, create never repeated.
At the end, with the faults gone: the operator converges and nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from reconciler_fakes import CRASH, KINDS, RESET, TIMEOUT_APPLIED, Fault
from reconciler_harness import NS, Harness, database_class

from dbaasctl.controller.database import DATABASES
from dbaasctl.kube.resources import SECRETS

T = TypeVar("T")
API_POINTS = (
    "get secrets",
    "create secrets",
    "patch secrets",
    "patch databases finalizers",
    "patch databases annotations",
    "patch databases/status",
    "get databases",
    "delete secrets",
)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.h: Harness = self.run(self._harness())
        self.tokens = 0
        self.rotate_intents = 0  # annotation values, "true", Secret deletions or edits
        self.risky = 0  # faults that may destroy issued credentials (each may cost one more rotate)
        self.deleted = False
        #: What the informers could serve: the Database and its Secret as they were after each step.
        self.history: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        self.klass: dict[str, Any] | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @staticmethod
    async def _harness() -> Harness:
        h = Harness()
        await h.start()
        h.create_database()
        return h

    def teardown(self) -> None:
        try:
            if not self.deleted or self.h.db() is not None:
                self._converged()
        finally:
            self.loop.close()

    # -- the world -------------------------------------------------------------------------------
    @precondition(lambda self: not self.deleted)
    @rule(n=st.integers(0, 3))
    def user_edits_labels(self, n: int) -> None:
        self.run(self.h.edit({"metadata": {"labels": {"app": f"v{n}"}}}))

    @precondition(lambda self: not self.deleted)
    @rule(true=st.booleans())
    def user_asks_for_rotation(self, true: bool) -> None:
        self.tokens += 1
        value = "true" if true else f"t{self.tokens}"
        self.run(self.h.edit({"metadata": {"annotations": {"dbaasctl.io/rotate": value}}}))
        self.rotate_intents += 1

    @precondition(lambda self: not self.deleted)
    @rule()
    def user_deletes_the_secret(self) -> None:
        if self.h.kube.read(SECRETS, NS, "orders-credentials") is not None:
            self.run(self.h.kube.delete(SECRETS.path(NS, "orders-credentials")))
            self.rotate_intents += 1

    @precondition(lambda self: not self.deleted)
    @rule()
    def user_deletes_the_database(self) -> None:
        self.run(self.h.kube.delete(DATABASES.path(NS, "orders")))
        self.deleted = True

    @rule(point=st.sampled_from(API_POINTS), kind=st.sampled_from(KINDS))
    def api_fails(self, point: str, kind: str) -> None:
        self.h.api.faults.append(Fault(point, kind))
        self.risky += kind == CRASH

    @rule(op=st.sampled_from(("create", "rotate", "delete")), kind=st.sampled_from(KINDS))
    def dbms_fails(self, op: str, kind: str) -> None:
        self.h.dbms.faults.append((op, kind))
        self.risky += kind in (CRASH, TIMEOUT_APPLIED, RESET)

    @rule(passes=st.integers(1, 3))
    def operator_works(self, passes: int) -> None:
        for _ in range(passes):
            self.run(self.h.reconcile())

    @rule()
    def dba_removes_or_restores_the_class(self) -> None:
        """The class missing for a while: passes can only report (Blocked), never act."""
        if self.klass is None:
            self.klass = self.h.classes.pop("pg")
        else:
            self.h.classes["pg"], self.klass = self.klass, None

    @rule(back=st.integers(1, 6))
    def operator_works_on_lagging_informers(self, back: int) -> None:
        """One pass on copies from `back` steps ago (as after a watch outage: our own writes and the
        user's since then unseen). Its Ready may be as stale as its view; what it does must not be
        repeated once the informers catch up."""
        if len(self.history) <= back:
            return
        database, secret = self.history[-1 - back]
        if database is None:
            return
        self.h.database_cache, self.h.secret_cache = database, secret
        try:
            self.run(self.h.reconcile(check=False))
        finally:
            self.h.database_cache = self.h.secret_cache = None

    # -- what must hold --------------------------------------------------------------------------
    @invariant()
    def safe(self) -> None:
        if not hasattr(self, "h"):
            return
        self.history.append(
            (copy.deepcopy(self.h.db()), copy.deepcopy(self.h.kube.read(SECRETS, NS, "orders-credentials")))
        )
        assert not self.h.violations, self.h.violations
        # Create runs again only after a fault that hid its outcome.
        assert self.h.dbms.repeats <= self.risky
        assert self.h.dbms.count("create") <= 1 + self.risky

    def _converged(self) -> None:
        h = self.h
        if self.klass is not None:
            h.classes["pg"], self.klass = self.klass, None
        h.api.faults.clear()
        h.dbms.faults.clear()
        for _ in range(4):
            self.run(h.converge(passes=40))
        assert not h.violations, h.violations
        assert h.dbms.repeats <= self.risky
        if self.deleted:
            assert h.db() is None, h.ready()
            assert h.secret() is None
            assert not h.dbms.passwords
            return
        assert 1 <= h.dbms.count("create") <= 1 + self.risky
        ready = h.ready()
        assert ready is not None
        assert ready[0] == "True", ready
        assert h.secret()["password"] == h.dbms.passwords["orders"]  # type: ignore[index]
        # One rotate per intent; a fault that may have destroyed issued credentials may cost one more.
        assert h.dbms.count("rotate") <= self.rotate_intents + self.risky, (
            h.dbms.count("rotate"),
            self.rotate_intents,
            self.risky,
        )


Lifecycle.TestCase.settings = settings(
    max_examples=600,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_lifecycle = Lifecycle.TestCase


GRACE = 60.0


class TwoPhaseLifecycle(Lifecycle):
    """The same world with a two-phase (A/B) class and time passing: rotations queue behind retires,
    retire never ends the login in use, and after convergence only the Secret's credentials log in."""

    @staticmethod
    async def _harness() -> Harness:
        h = Harness(klass=database_class(retire=True, grace=f"{GRACE:g}s"))
        await h.start()
        h.create_database()
        return h

    @rule(seconds=st.sampled_from((5.0, GRACE + 1)))
    def time_passes(self, seconds: float) -> None:
        self.h.clock.advance(seconds)

    @rule(kind=st.sampled_from(KINDS))
    def retire_fails(self, kind: str) -> None:
        self.h.dbms.faults.append(("retire", kind))
        self.risky += kind in (CRASH, TIMEOUT_APPLIED, RESET)

    @invariant()
    def retire_spares_the_login_in_use(self) -> None:
        if hasattr(self, "h"):
            assert self.h.dbms.bad_retires == 0

    @invariant()
    def nothing_pending_means_one_login(self) -> None:
        """Status says no previous credentials are pending: then only the Secret's log in."""
        if not hasattr(self, "h") or self.h.dbms.faults or self.h.api.faults:
            return
        db = self.h.db()
        status = (db or {}).get("status") or {}
        secret = self.h.secret()
        ready = self.h.ready()
        if (
            db is None
            or secret is None
            or status.get("previousCredentialsRetireAt")
            or status.get("pendingOperation")
            or ready is None
            or ready[:2] != ("True", "Rotated")
        ):
            return
        assert self.h.dbms.logins == {secret["username"]: secret["password"]}, self.h.dbms.logins

    def _converged(self) -> None:
        h = self.h
        if self.klass is not None:
            h.classes["pg"], self.klass = self.klass, None
        h.api.faults.clear()
        h.dbms.faults.clear()
        for _ in range(3):
            self.run(h.converge(passes=40))
            h.clock.advance(GRACE + 1)
        super()._converged()
        assert h.dbms.bad_retires == 0
        assert h.dbms.count("retire") <= h.dbms.count("rotate") + self.risky
        if self.deleted:
            assert not h.dbms.logins
            return
        status = (h.db() or {}).get("status") or {}
        assert status.get("previousCredentialsRetireAt") is None, status
        secret = h.secret()
        assert secret is not None
        assert h.dbms.logins == {secret["username"]: secret["password"]}  # every superseded login retired


TwoPhaseLifecycle.TestCase.settings = settings(
    max_examples=600,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_phase_lifecycle = TwoPhaseLifecycle.TestCase
