"""OperatorConfig + DSN Secrets + DatabaseClass drivers → the live endpoint registry and its bindings.

The reference operator read this once at boot; here it is a level-based reconcile of one key, run again
whenever the OperatorConfig, a Secret in the operator namespace or a DatabaseClass changes, and
periodically to publish endpoint health in the OperatorConfig's status.

Two products:
- `EndpointRegistry.apply(...)`: the pools the controller calls through (hot add / replace / remove).
- `ConfigState`: what the Database admission reads: endpoint → DatabaseClass name and namespace rules,
  plus a per-endpoint problem (DSN Secret missing, ...) described without any secret content.

An invalid edit of the OperatorConfig (the CRD schema lets little through, but cross-field rules remain)
keeps the last good configuration running and is reported in the OperatorConfig's status, so a typo does
not take every endpoint away.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dbaasctl.api.operatorconfig import (
    DEFAULT_OPERATION_TIMEOUT,
    EndpointHealth,
    OperatorConfig,
    OperatorConfigStatus,
)
from dbaasctl.api.operatorconfig import EndpointSpec as ApiEndpoint
from dbaasctl.controller import reasons
from dbaasctl.controller.config_status import health_entries, set_conditions
from dbaasctl.controller.secrets import decode_data
from dbaasctl.dbms import endpoints as dbms_endpoints
from dbaasctl.dbms.drivers import DRIVER_KINDS
from dbaasctl.dbms.dsn import DsnError, ensure_compatible
from dbaasctl.dbms.dsn_parse import parse_dsn
from dbaasctl.dbms.tls import TlsState
from dbaasctl.kube.api import KubeApi
from dbaasctl.kube.controller import Result
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import ResourceRef
from dbaasctl.primitives.clock import utc_now
from dbaasctl.redaction import redact, register_secret

__all__ = [
    "CONFIG_KEY",
    "OPERATOR_CONFIGS",
    "Binding",
    "ConfigReconciler",
    "ConfigState",
]

log = logging.getLogger(__name__)

OPERATOR_CONFIGS = ResourceRef("dbaasctl.io", "v1", "operatorconfigs", True, "OperatorConfig")
#: The config controller has one key: there is one OperatorConfig that matters.
CONFIG_KEY = "operatorconfig"
#: How often endpoint health is re-read into the OperatorConfig's status (writes only on change).
STATUS_PERIOD = 10.0


@dataclass(frozen=True)
class Binding:
    """One endpoint as the Database admission sees it."""

    endpoint: str
    class_name: str
    spec: ApiEndpoint
    fingerprint: str  # changes when anything a Database depends on changes (class, DSN, rules, limits)
    problem: str | None = None  # why the endpoint cannot be used now; never contains secret material
    problem_reason: str = reasons.ENDPOINT_UNAVAILABLE  # the Database condition reason for `problem`
    host: str | None = None  # from the DSN: the Service Binding fallback when a result has no host
    port: int | None = None

    def allows(self, namespace: str, labels: Mapping[str, str] | None) -> bool:
        return self.spec.allows(namespace, labels)


@dataclass
class ConfigState:
    """The last applied configuration; written only by the ConfigReconciler."""

    config_ref: str  # namespace/name, for messages
    found: bool = False
    error: str | None = None  # invalid config (the last good one stays in force)
    bindings: dict[str, Binding] = field(default_factory=dict)
    referenced_secrets: frozenset[str] = frozenset()
    applied: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_applied(self, within: float | None = None) -> bool:
        try:
            async with asyncio.timeout(within):
                await self.applied.wait()
        except TimeoutError:
            return False
        return True

    def endpoints_of_class(self, class_name: str) -> list[str]:
        return sorted(b.endpoint for b in self.bindings.values() if b.class_name == class_name)


ClassLookup = Callable[[str], Mapping[str, Any] | None]
SecretLookup = Callable[[str], Mapping[str, Any] | None]


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class ConfigReconciler:
    """Reconciles the single CONFIG_KEY; `on_bindings_changed(endpoints)` re-enqueues Databases."""

    def __init__(
        self,
        *,
        client: KubeApi,
        namespace: str,
        name: str,
        state: ConfigState,
        registry: dbms_endpoints.EndpointRegistry,
        get_config: Callable[[], Mapping[str, Any] | None],
        get_class: ClassLookup,
        get_secret: SecretLookup,
        on_bindings_changed: Callable[[set[str]], None],
        status_period: float = STATUS_PERIOD,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.state = state
        self.registry = registry
        self._get_config = get_config
        self._get_class = get_class
        self._get_secret = get_secret
        self._on_changed = on_bindings_changed
        self.status_period = status_period
        self._last_specs: dict[str, dbms_endpoints.EndpointSpec] | None = None

    async def reconcile(self, key: str) -> Result | None:
        raw = self._get_config()
        if raw is None:
            await self._apply_missing()
            return None
        try:
            config = OperatorConfig.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err['msg']}" for err in exc.errors()
            )
            self.state.found = True
            self.state.error = redact(problems)[:1000]
            log.warning("OperatorConfig %s is invalid; keeping the last good configuration: %s",
                        self.state.config_ref, self.state.error)  # fmt: skip
            self.state.applied.set()
            await self._write_status(raw, None)
            return Result(requeue_after=self.status_period)
        self.state.found = True
        self.state.error = None
        bindings, specs = self._build(config)
        await self._apply(bindings, specs)
        await self._write_status(raw, config)
        return Result(requeue_after=self.status_period)

    # -- building ------------------------------------------------------------------------------------

    def _resolve_dsn(self, ep: ApiEndpoint) -> tuple[str | None, str | None]:
        """(dsn, problem). Problems name the Secret and key, never any of its content."""
        if ep.dsn is not None:
            return ep.dsn, None
        ref = ep.secret_key_ref
        assert ref is not None  # the model guarantees exactly one source
        secret = self._get_secret(ref.name)
        if secret is None:
            return None, f"DSN Secret {self.namespace}/{ref.name} not found"
        value = decode_data(secret).get(ref.key)
        if value is None:
            return None, f"DSN Secret {self.namespace}/{ref.name} has no valid key {ref.key!r}"
        if not value.strip():
            return None, f"DSN Secret {self.namespace}/{ref.name} key {ref.key!r} is empty"
        return value.strip(), None

    def _build(self, config: OperatorConfig) -> tuple[dict[str, Binding], list[dbms_endpoints.EndpointSpec]]:
        bindings: dict[str, Binding] = {}
        specs: list[dbms_endpoints.EndpointSpec] = []
        referenced: set[str] = set()
        for class_name, ep in config.spec.endpoints():
            if ep.secret_key_ref is not None:
                referenced.add(ep.secret_key_ref.name)
            dsn, problem = self._resolve_dsn(ep)
            problem_reason = reasons.ENDPOINT_UNAVAILABLE
            klass = self._get_class(class_name)
            driver = str(((klass or {}).get("spec") or {}).get("driver") or "")
            if problem is None and klass is None:
                problem, problem_reason = f"DatabaseClass {class_name} not found", reasons.CLASS_NOT_FOUND
            if problem is None and driver not in DRIVER_KINDS:
                problem = (
                    f"DatabaseClass {class_name} names driver {driver!r}; known: {', '.join(DRIVER_KINDS)}"
                )
                problem_reason = reasons.DRIVER_NOT_SUPPORTED
            host: str | None = None
            port: int | None = None
            if problem is None and dsn is not None:
                try:
                    parsed = parse_dsn(dsn)
                    host, port = (parsed.host or None), parsed.port
                    ensure_compatible(parsed, driver)
                except DsnError as exc:
                    # DsnError messages never contain credentials; redact anyway (defence in depth).
                    problem = f"endpoint {ep.name}: {redact(str(exc), [dsn])}"
                    problem_reason = (
                        reasons.DRIVER_NOT_SUPPORTED if "cannot serve" in str(exc) else problem_reason
                    )
            spec: dbms_endpoints.EndpointSpec | None = None
            if problem is None and dsn is not None:
                timeout = ep.operation_timeout or DEFAULT_OPERATION_TIMEOUT
                try:
                    spec = dbms_endpoints.EndpointSpec(
                        name=ep.name,
                        driver=driver,
                        dsn=dsn,
                        rps=config.spec.endpoint_rps(ep),
                        burst=ep.burst or 0,
                        max_concurrent=ep.max_concurrent_operations or 10,
                        operation_timeout=timeout.total_seconds(),
                        keepalive=float(config.spec.keepalive),
                        tls_minimum=TlsState(config.spec.endpoint_tls_minimum(ep)),
                    )
                except ValueError as exc:
                    problem = redact(str(exc), [dsn])
            if spec is not None:
                specs.append(spec)
            secret_fp = hashlib.sha256((dsn or "").encode()).hexdigest()
            bindings[ep.name] = Binding(
                endpoint=ep.name,
                class_name=class_name,
                spec=ep,
                fingerprint=_fingerprint(class_name, driver, ep.model_dump(mode="json"), secret_fp, problem),
                problem=problem,
                problem_reason=problem_reason,
                host=host,
                port=port,
            )
        self.state.referenced_secrets = frozenset(referenced)
        return bindings, specs

    async def _apply(self, bindings: dict[str, Binding], specs: list[dbms_endpoints.EndpointSpec]) -> None:
        for spec in specs:
            # One slot per endpoint: an edited DSN replaces the old one in the redactor.
            register_secret(spec.dsn, slot=f"endpoint-dsn/{spec.name}")
        wanted = {s.name: s for s in specs}
        if self._last_specs != wanted:
            await self.registry.apply(specs)
            self._last_specs = wanted
        previous = self.state.bindings
        changed = {
            name
            for name in set(previous) | set(bindings)
            if (previous.get(name) is None) != (bindings.get(name) is None)
            or (
                name in previous
                and name in bindings
                and previous[name].fingerprint != bindings[name].fingerprint
            )
        }
        self.state.bindings = bindings
        first = not self.state.applied.is_set()
        self.state.applied.set()
        if changed and not first:
            log.info("endpoint configuration changed: %s", ", ".join(sorted(changed)))
            self._on_changed(changed)

    async def _apply_missing(self) -> None:
        had = set(self.state.bindings)
        self.state.found = False
        self.state.error = None
        self.state.bindings = {}
        self.state.referenced_secrets = frozenset()
        if self._last_specs != {}:
            await self.registry.apply([])
            self._last_specs = {}
        first = not self.state.applied.is_set()
        self.state.applied.set()
        if had and not first:
            log.warning("OperatorConfig %s is gone; all endpoints removed", self.state.config_ref)
            self._on_changed(had)

    # -- status --------------------------------------------------------------------------------------

    def _health_entries(
        self, config: OperatorConfig | None, previous: Sequence[EndpointHealth]
    ) -> list[EndpointHealth]:
        names = [ep.name for _, ep in config.spec.endpoints()] if config else sorted(self.state.bindings)
        problems = {n: b.problem for n, b in self.state.bindings.items() if b.problem is not None}
        return health_entries(names, problems, self.registry.health(), previous, utc_now())

    async def _write_status(self, raw: Mapping[str, Any], config: OperatorConfig | None) -> None:
        meta = raw.get("metadata") or {}
        try:
            current = OperatorConfigStatus.model_validate(raw.get("status") or {})
        except ValidationError:
            current = OperatorConfigStatus()
        status = current.model_copy(deep=True)
        generation = meta.get("generation")
        status.endpoints = self._health_entries(config, current.endpoints)
        minimums = (
            {ep.name: config.spec.endpoint_tls_minimum(ep) for _, ep in config.spec.endpoints()}
            if config
            else {}
        )
        set_conditions(status, minimums, self.state.error, generation)
        if status.to_api() == current.to_api():
            return
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status.to_api()}
        try:
            await self.client.patch(OPERATOR_CONFIGS.path(self.namespace, self.name, "status"), body, "merge")
        except ApiError as exc:
            if exc.is_conflict or exc.is_not_found:
                return  # the watch brings the fresh object and another pass
            raise
