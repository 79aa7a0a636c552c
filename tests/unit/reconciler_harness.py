"""A Database reconciler wired to `MemoryApi` and `MemoryDbms`, with the real admission, config state and
endpoint registry; `converge()` runs passes the way the work queue would until the object settles."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from reconciler_fakes import Crash, FaultyApi, MemoryDbms

from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.controller.admission import Admission
from dbaasctl.controller.config import ConfigReconciler, ConfigState
from dbaasctl.controller.database import DATABASES, DatabaseMetrics, DatabaseReconciler, Dependencies
from dbaasctl.controller.database.rollout import ROLLOUT_ANNOTATION, WORKLOADS
from dbaasctl.dbms.endpoints import EndpointRegistry
from dbaasctl.kube.controller import Result
from dbaasctl.kube.resources import SECRETS, ResourceRef
from support.fakekube import FakeKube

NS = "shop"
INPUTS = {"k8sName": "{{ metadata.name }}"}


#: A two-phase class: rotate the A/B role not in use, retire the superseded one after the grace period.
AB_ROTATE_INPUTS = {**INPUTS, "inUse": "{{ previous.username | default('') }}"}
AB_RETIRE_INPUTS = {**INPUTS, "retiredUser": "{{ previous.username | default('') }}"}


def database_class(
    rotate: bool = True, interval: str | None = None, *, retire: bool = False, grace: str | None = None
) -> dict[str, Any]:
    operations: dict[str, Any] = {
        "create": {"name": "dbaas.create", "inputs": INPUTS},
        "delete": {"name": "dbaas.delete", "inputs": INPUTS},
    }
    if rotate:
        operations["rotate"] = {"name": "dbaas.rotate", "inputs": AB_ROTATE_INPUTS if retire else INPUTS}
    if retire:
        operations["retire"] = {"name": "dbaas.retire", "inputs": AB_RETIRE_INPUTS}
    spec: dict[str, Any] = {"driver": "postgres", "operations": operations}
    rotation: dict[str, Any] = {}
    if interval:
        rotation["interval"] = interval
    if grace:
        rotation["gracePeriod"] = grace
    if rotation:
        spec["rotation"] = rotation
    return {"apiVersion": "dbaasctl.io/v1", "kind": "DatabaseClass", "metadata": {"name": "pg"}, "spec": spec}


def operator_config() -> dict[str, Any]:
    return {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "OperatorConfig",
        "metadata": {"name": "dbaasctl", "namespace": "ops", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "keepalive": 0,
            "dbms": [
                {
                    "databaseClassName": "pg",
                    "endpoints": [{"name": "pg", "dsn": "postgresql://admin:pw@db.internal:5432/dbaas"}],
                }
            ],
        },
    }


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def normal(self, regarding: Mapping[str, Any], reason: str, note: str, action: str | None = None) -> None:
        self.items.append(("Normal", reason, note))

    def warning(
        self, regarding: Mapping[str, Any], reason: str, note: str, action: str | None = None
    ) -> None:
        self.items.append(("Warning", reason, note))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.items]


EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return (self.now - EPOCH).total_seconds()


class Harness:
    def __init__(self, *, klass: dict[str, Any] | None = None, rollout: bool = False) -> None:
        self.rollout = rollout
        self.kube = FakeKube([DATABASES, *WORKLOADS], status_subresources=[DATABASES])
        self.api = FaultyApi(self.kube)
        self.dbms = MemoryDbms()
        self.events = Events()
        self.clock = Clock()
        self.metrics_registry = CollectorRegistry()
        self.metrics = DatabaseMetrics(self.metrics_registry)
        self.classes: dict[str, dict[str, Any]] = {"pg": klass or database_class()}
        self.namespaces: dict[str, dict[str, Any]] = {NS: {"metadata": {"name": NS}}}
        self.state = ConfigState(config_ref="ops/dbaasctl")
        # The registry's circuit breaker runs on the same virtual clock as the passes.
        self.registry = EndpointRegistry(driver_factory=self.dbms.driver, clock=self.clock.monotonic)
        self.reconciler = self._reconciler()
        self.crashes = 0
        self.violations: list[str] = []
        self.secret_cache: dict[str, Any] | None = None
        self.database_cache: dict[str, Any] | None = (
            None  # an informer that lags: this copy, not the server's
        )
        self._edits = 0

        async def user_edit() -> None:
            self._edits += 1
            for name in [o["metadata"]["name"] for o in self.kube.objects(DATABASES, NS)]:
                await self.edit({"metadata": {"labels": {"during-call": str(self._edits)}}}, name)

        self.dbms.edit = user_edit

    async def start(self) -> None:
        reconciler = ConfigReconciler(
            client=self.api,
            namespace="ops",
            name="dbaasctl",
            state=self.state,
            registry=self.registry,
            get_config=operator_config,
            get_class=self.classes.get,
            get_secret=lambda _: None,
            on_bindings_changed=lambda _: None,
        )
        bindings, specs = reconciler._build(OperatorConfig.model_validate(operator_config()))
        await self.registry.apply(specs)
        self.state.found = True
        self.state.bindings = bindings
        self.state.applied.set()

    def _reconciler(self) -> DatabaseReconciler:
        extra: dict[str, Any] = {}
        if "sleep" in Dependencies.__dataclass_fields__:

            async def no_sleep(_: float) -> None:
                return None

            extra["sleep"] = no_sleep
        return DatabaseReconciler(
            Dependencies(
                client=self.api,  # type: ignore[arg-type]
                get_database=lambda key: self.database_cache or self.kube.read(DATABASES, *key.split("/", 1)),
                get_secret=lambda ns, name: self._cached_secret(ns, name),
                admission=Admission(
                    self.state,
                    get_class=self.classes.get,
                    get_namespace=self.namespaces.get,
                    endpoint_driver=lambda ep: "postgres" if ep == "pg" else None,
                ),
                registry=self.registry,
                recorder=self.events,
                state=self.state,
                metrics=self.metrics,
                clock=self.clock,
                rollout_workloads=self.rollout,
                **extra,
            )
        )

    def _cached_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.secret_cache is not None:
            return self.secret_cache  # an informer that has not seen our last write yet
        secret = self.kube.read(SECRETS, namespace, name)
        labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
        return secret if labels.get("app.kubernetes.io/managed-by") == "dbaasctl" else None

    def restart(self) -> None:
        """A new operator process: nothing the old one held in memory survives."""
        self.reconciler = self._reconciler()

    # -- the user's side -------------------------------------------------------------------------
    def create_database(self, name: str = "orders", **spec: Any) -> None:
        self.kube.seed(
            DATABASES,
            {
                "apiVersion": "dbaasctl.io/v1",
                "kind": "Database",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"endpoint": "pg", **spec},
            },
        )

    def db(self, name: str = "orders") -> dict[str, Any] | None:
        return self.kube.read(DATABASES, NS, name)

    async def edit(self, patch: dict[str, Any], name: str = "orders") -> None:
        """A user's edit (kubectl label / annotate / apply): no precondition."""
        await self.kube.patch(DATABASES.path(NS, name), patch)

    def secret(self, name: str = "orders", suffix: str = "-credentials") -> dict[str, str] | None:
        secret = self.kube.read(SECRETS, NS, f"{name}{suffix}")
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def ready(self, name: str = "orders") -> tuple[str, str, str] | None:
        for cond in ((self.db(name) or {}).get("status") or {}).get("conditions") or []:
            if cond["type"] == "Ready":
                return cond["status"], cond["reason"], cond["message"]
        return None

    # -- the queue's side ------------------------------------------------------------------------
    async def reconcile(self, name: str = "orders", *, check: bool = True) -> Result | BaseException | None:
        """One pass; an exception (the queue's error path) or a crash is returned, not raised.

        `check`: hold the pass to Ready=True only while the Secret is usable (not for a pass on lagging
        informers, which cannot see a change they have not received yet)."""
        try:
            outcome: Result | BaseException | None = await self.reconciler.reconcile(f"{NS}/{name}")
        except Crash as exc:
            self.crashes += 1
            self.restart()
            return exc
        except Exception as exc:
            outcome = exc
        if check:
            self._check(name)
        return outcome

    def _check(self, name: str) -> None:
        """After every pass that ran to its end: Ready=True only while the Secret holds what the DBMS
        accepts now. Not for a Database being deleted: the user asked for its credentials to end, and a
        delete whose outcome a crash hid cannot be known to have run (its Secret goes with it)."""
        if ((self.db(name) or {}).get("metadata") or {}).get("deletionTimestamp"):
            return
        ready = self.ready(name)
        if ready is None or ready[0] != "True":
            return
        secret = self.secret(name)
        if secret is None or not self.dbms.accepts(secret.get("username"), secret.get("password")):
            self.violations.append(f"Ready=True ({ready[1]}) but the Secret does not hold the credentials")

    async def converge(self, name: str = "orders", *, passes: int = 30) -> list[Any]:
        """Run passes until one ends without asking for another (success, or a wait of over a minute)."""
        outcomes: list[Any] = []
        for _ in range(passes):
            outcome = await self.reconcile(name)
            outcomes.append(outcome)
            if isinstance(outcome, Result) and outcome.requeue_after:
                self.clock.advance(outcome.requeue_after)  # the work queue waits before the next pass
            if outcome is None or (
                isinstance(outcome, Result)
                and not outcome.requeue
                and (outcome.requeue_after is None or outcome.requeue_after > 60)
                and not getattr(outcome, "failed", False)
            ):
                return outcomes
        return outcomes


def opted_in_workload(ref: ResourceRef, name: str, opt_in: str | None) -> dict[str, Any]:
    """A Deployment, StatefulSet or DaemonSet, annotated to roll on rotations of `opt_in` (if given)."""
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if opt_in is not None:
        meta["annotations"] = {ROLLOUT_ANNOTATION: opt_in}
    return {
        "apiVersion": "apps/v1",
        "kind": ref.kind,
        "metadata": meta,
        "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}},
    }
