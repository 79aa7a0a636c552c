"""`dbaasctl run`: wires the controller kit, the live configuration and the Database reconciler.

What is watched, and what each change wakes up:

| informer (scope)                                      | change → enqueue                                      |
|-------------------------------------------------------|-------------------------------------------------------|
| Databases (all or --watch-namespaces)                 | that Database (status-only updates are our own: skip) |
| Secrets labelled managed-by=dbaasctl (same scope)     | the owning Database                                   |
| DatabaseClasses (cluster)                             | the config (driver), Databases on its endpoints       |
| Namespaces (cluster; labels for allowedNamespaces)    | Databases in that namespace: added, labels changed    |
| the OperatorConfig --config-name (operator namespace) | the config                                            |
| Secrets in the operator namespace (DSNs)              | the config, when a referenced one changes             |
| endpoint health (registry listener)                   | the config (status); Databases on an endpoint now up  |

The last row is why recovery after a DBMS outage does not wait out a long per-item backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from dbaasctl import __version__
from dbaasctl.api.database import API_VERSION
from dbaasctl.connect import KubeconfigError, open_client
from dbaasctl.controller import secrets as owned
from dbaasctl.controller.admission import Admission
from dbaasctl.controller.config import CONFIG_KEY, OPERATOR_CONFIGS, ConfigReconciler, ConfigState
from dbaasctl.controller.database import DATABASES, DatabaseMetrics, DatabaseReconciler, Dependencies
from dbaasctl.dbms.endpoints import EndpointHealth, EndpointRegistry
from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.cache import NAMESPACE_INDEX, Informer
from dbaasctl.kube.manager import Manager
from dbaasctl.kube.manager_settings import ManagerSettings
from dbaasctl.kube.ratelimit import default_controller_rate_limiter
from dbaasctl.kube.resources import NAMESPACES, SECRETS, JsonDict, ResourceRef, object_key
from dbaasctl.kube.transport import limit_tls_read_buffers
from dbaasctl.observability.logging import setup_logging
from dbaasctl.settings import Settings, SettingsError, describe, load_settings
from dbaasctl.templates import limits as template_limits

__all__ = ["DATABASE_CLASSES", "Operator", "main", "run"]

log = logging.getLogger("dbaasctl")

DATABASE_CLASSES = ResourceRef("dbaasctl.io", "v1", "databaseclasses", False, "DatabaseClass")
ENDPOINT_INDEX = "endpoint"
#: A periodic full pass over every Database (drift the watches cannot see, e.g. a foreign Secret).
DATABASE_RESYNC = 600.0
#: The longest a failing Database waits between attempts (client-go's default is 1000 s).
MAX_BACKOFF = 300.0


def _endpoint_index(obj: JsonDict) -> list[str]:
    endpoint = (obj.get("spec") or {}).get("endpoint")
    return [str(endpoint)] if endpoint else []


def _without_status(obj: JsonDict) -> JsonDict:
    meta = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _owner_database(secret: JsonDict) -> str | None:
    meta = secret.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Database" and str(ref.get("apiVersion", "")).startswith("dbaasctl.io/"):
            return f"{meta.get('namespace')}/{ref.get('name')}"
    label = (meta.get("labels") or {}).get(owned.DATABASE_LABEL)
    return f"{meta.get('namespace')}/{label}" if label else None


class Operator:
    """The assembled process; `manager.run()` runs it."""

    def __init__(self, client: KubeApi, settings: Settings, namespace: str) -> None:
        self.settings = settings
        self.namespace = namespace
        template_limits.RENDER_DEADLINE = settings.template_deadline  # process-wide, like the log level
        health = settings.health_address
        metrics = settings.metrics_address
        self.manager = Manager(
            client,
            ManagerSettings(
                probe_host=health.host or "0.0.0.0",  # noqa: S104 - probes come from the kubelet
                probe_port=health.port,
                metrics_host=(metrics.host or "0.0.0.0") if metrics else "127.0.0.1",  # noqa: S104
                metrics_port=metrics.port if metrics else None,
                metrics_enabled=metrics is not None,
                metrics_secure=settings.secure_metrics,
                metrics_cert_file=settings.metrics_cert_file,
                metrics_key_file=settings.metrics_key_file,
                leader_election=settings.leader_elect,
                graceful_shutdown_timeout=settings.shutdown_timeout,
                lease_name=settings.leader_election_id,
                lease_namespace=namespace,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                watch_list=settings.watch_list,
            ),
        )
        mgr = self.manager
        self.registry = EndpointRegistry()
        self.state = ConfigState(config_ref=f"{namespace}/{settings.config_name}")
        scopes: Iterable[str | None] = settings.watch_namespaces or (None,)
        self.databases: dict[str | None, Informer] = {}
        self.secrets: dict[str | None, Informer] = {}
        for scope in scopes:
            self.databases[scope] = mgr.add_informer(
                DATABASES,
                namespace=scope,
                indexers={ENDPOINT_INDEX: _endpoint_index},
                resync_period=DATABASE_RESYNC,
            )
            self.secrets[scope] = mgr.add_informer(SECRETS, namespace=scope, label_selector=owned.SELECTOR)
        self.classes = mgr.add_informer(DATABASE_CLASSES)
        self.namespaces = mgr.add_informer(NAMESPACES)
        self.configs = mgr.add_informer(
            OPERATOR_CONFIGS, namespace=namespace, field_selector=f"metadata.name={settings.config_name}"
        )
        self.dsn_secrets = mgr.add_informer(SECRETS, namespace=namespace, name=f"secrets@{namespace}")

        self.recorder = mgr.event_recorder("dbaasctl.io/database-controller")
        self.admission = Admission(
            self.state,
            get_class=lambda name: self.classes.get_by_name(name),
            get_namespace=lambda name: self.namespaces.get_by_name(name),
            endpoint_driver=self._endpoint_driver,
        )
        self.reconciler = DatabaseReconciler(
            Dependencies(
                client=client,
                get_database=self._get_database,
                get_secret=self._get_secret,
                admission=self.admission,
                registry=self.registry,
                recorder=self.recorder,
                state=self.state,
                metrics=DatabaseMetrics(mgr.registry),
                may_act=mgr.may_act,
                rollout_workloads=settings.rollout_workloads,
            )
        )
        self.config_reconciler = ConfigReconciler(
            client=client,
            namespace=namespace,
            name=settings.config_name,
            state=self.state,
            registry=self.registry,
            get_config=lambda: self.configs.get_by_name(settings.config_name, namespace),
            get_class=lambda name: self.classes.get_by_name(name),
            get_secret=lambda name: self.dsn_secrets.get_by_name(name, namespace),
            on_bindings_changed=self._enqueue_endpoints,
        )
        self.db_controller = mgr.add_controller(
            "database",
            self.reconciler.reconcile,
            workers=settings.workers,
            rate_limiter=default_controller_rate_limiter(max_delay=MAX_BACKOFF),
        )
        self.config_controller = mgr.add_controller(
            "operatorconfig", self.config_reconciler.reconcile, workers=1
        )
        mgr.add_runnable("endpoint-registry", self._close_registry_at_exit)
        self._wire()

    # -- lookups -------------------------------------------------------------------------------------

    def _scope(self, table: dict[str | None, Informer], namespace: str) -> Informer | None:
        return table.get(namespace) or table.get(None)

    def _get_database(self, key: str) -> JsonDict | None:
        namespace = key.partition("/")[0]
        informer = self._scope(self.databases, namespace)
        return informer.get(key) if informer is not None else None

    def _get_secret(self, namespace: str, name: str) -> JsonDict | None:
        informer = self._scope(self.secrets, namespace)
        return informer.get_by_name(name, namespace) if informer is not None else None

    def _endpoint_driver(self, endpoint: str) -> str | None:
        spec = self.registry.spec(endpoint)
        return spec.driver if spec is not None else None

    def _database_keys(self, index: str, value: str) -> list[str]:
        keys: list[str] = []
        for informer in self.databases.values():
            keys += informer.index_keys(index, value)
        return keys

    # -- event wiring --------------------------------------------------------------------------------

    def _enqueue_endpoints(self, endpoints: Iterable[str]) -> None:
        for endpoint in endpoints:
            for key in self._database_keys(ENDPOINT_INDEX, endpoint):
                self.db_controller.enqueue(key)

    def _enqueue_config(self, *_: Any) -> None:
        self.config_controller.enqueue(CONFIG_KEY)

    def _wire(self) -> None:
        enqueue_db = self.db_controller.enqueue

        def db_update(old: JsonDict, new: JsonDict) -> None:
            if old is new or _without_status(old) != _without_status(new):
                enqueue_db(object_key(new))

        for informer in self.databases.values():
            informer.add_handlers(
                on_add=lambda obj: enqueue_db(object_key(obj)),
                on_update=db_update,
                on_delete=lambda obj: enqueue_db(object_key(obj)),
            )

        def secret_changed(obj: JsonDict) -> None:
            key = _owner_database(obj)
            if key is not None:
                enqueue_db(key)

        for informer in self.secrets.values():
            informer.add_handlers(
                on_add=secret_changed,
                on_update=lambda _old, new: secret_changed(new),
                on_delete=secret_changed,
            )

        def class_changed(obj: JsonDict) -> None:
            self._enqueue_config()
            name = (obj.get("metadata") or {}).get("name", "")
            self._enqueue_endpoints(self.state.endpoints_of_class(name))

        def class_updated(old: JsonDict, new: JsonDict) -> None:
            if old is new or old.get("spec") != new.get("spec"):
                class_changed(new)

        self.classes.add_handlers(on_add=class_changed, on_update=class_updated, on_delete=class_changed)

        def namespace_updated(old: JsonDict, new: JsonDict) -> None:
            if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
                for key in self._database_keys(NAMESPACE_INDEX, (new.get("metadata") or {}).get("name", "")):
                    enqueue_db(key)

        def namespace_added(obj: JsonDict) -> None:
            # Databases admitted against a namespace not yet in the cache wait for it (never fail-open).
            for key in self._database_keys(NAMESPACE_INDEX, (obj.get("metadata") or {}).get("name", "")):
                enqueue_db(key)

        self.namespaces.add_handlers(on_add=namespace_added, on_update=namespace_updated)
        self.configs.add_handlers(
            on_add=self._enqueue_config, on_update=self._enqueue_config, on_delete=self._enqueue_config
        )

        def dsn_secret_changed(*objs: JsonDict) -> None:
            name = (objs[-1].get("metadata") or {}).get("name")
            if name in self.state.referenced_secrets and (
                len(objs) == 1 or objs[0].get("data") != objs[1].get("data")
            ):
                self._enqueue_config()

        self.dsn_secrets.add_handlers(
            on_add=dsn_secret_changed, on_update=dsn_secret_changed, on_delete=dsn_secret_changed
        )

        def health_changed(endpoint: str, health: EndpointHealth) -> None:
            self._enqueue_config()
            if health.healthy:
                self._enqueue_endpoints([endpoint])

        self.registry.add_listener(health_changed)
        # The config reconciler runs first even when no OperatorConfig exists (no add event would come).
        self._enqueue_config()

    async def _close_registry_at_exit(self) -> None:
        """Leader-only: keeps the DBMS pools for as long as we lead, closes them when we stop."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.registry.close()


async def run(settings: Settings) -> int:
    namespace = settings.operator_namespace()
    log.info(
        "dbaasctl %s starting (API %s)",
        __version__,
        API_VERSION,
        extra={"settings": describe(settings), "operator_namespace": namespace},
    )
    limit_tls_read_buffers()
    try:
        client = await open_client(settings.kubeconfig)
    except KubeconfigError as exc:
        log.error("%s", exc)
        return 2
    operator = Operator(client, settings, namespace)
    return await operator.manager.run()


def main(args: argparse.Namespace, load: Callable[..., Settings] = load_settings) -> int:
    """The `run` subcommand."""
    try:
        settings = load(args)
    except SettingsError as exc:
        setup_logging("info", "console")
        log.error("%s", exc)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
