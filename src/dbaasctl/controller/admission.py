"""Everything checked before a DBMS is called: endpoint, class, driver, namespace, params, templates.

Each failure is an `AdmissionError` with one of the stable reasons and a message built from names and
keys only. Nothing here talks to a DBMS or the API server; it reads the informer caches and the applied
configuration, so a wrong Database costs no DBMS round trip and no procedure ever sees invalid input.

Strictness depends on the operation. Creating a database enforces every rule. Rotating or deleting one
that already exists must not be blocked by rules tightened since it was created (a DBA adding a pattern
to a parameter, an administrator narrowing allowedNamespaces): that would strand databases. So those
paths skip the namespace rule and apply parameter defaults without re-validating the values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dbaasctl.api.database import Database
from dbaasctl.api.databaseclass import DatabaseClass, DatabaseClassSpec, OperationName, ParameterError
from dbaasctl.controller import reasons
from dbaasctl.controller.binding import MissingResultKey, binding_data
from dbaasctl.controller.config import Binding, ConfigState
from dbaasctl.dbms.drivers import DRIVER_KINDS
from dbaasctl.templates import TemplateContext, TemplateError
from dbaasctl.templates.offloop import Renders

__all__ = ["Admission", "AdmissionError", "NotReadyError", "Plan", "SecretRenderError"]


class AdmissionError(Exception):
    """The Database cannot be acted on as configured; `reason` is a stable condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NotReadyError(Exception):
    """The operator's own view is catching up (e.g. an endpoint being re-opened for a new driver)."""


class SecretRenderError(Exception):
    """The Secret cannot be built from the procedure's result; the message names keys, never values."""


@dataclass(frozen=True)
class Plan:
    """What the reconciler needs to call one procedure and build the Secret."""

    endpoint: str
    binding: Binding
    class_name: str
    klass: DatabaseClassSpec
    params: dict[str, str]
    context: TemplateContext
    endpoint_host: str | None
    endpoint_port: int | None
    #: status.credentialGeneration when admitted: part of each operation's idempotency key.
    generation: int = 0
    #: Where templates are rendered: off the event loop, once per pass (share one per pass).
    renders: Renders = field(default_factory=Renders, compare=False)

    @property
    def driver(self) -> str:
        return self.klass.driver

    async def operation(
        self, op: OperationName, previous: Mapping[str, str] | None = None
    ) -> tuple[str, dict[str, str]]:
        """The procedure name and rendered inputs of one operation; `previous`: the superseded Secret's
        data (rotate and retire of a two-phase rotation)."""
        operation = self.klass.operations.get(op)
        if operation is None:
            raise AdmissionError(
                reasons.OPERATION_NOT_SUPPORTED,
                f"DatabaseClass {self.class_name} declares no {op} procedure",
            )
        try:
            context = self.context.for_operation(op, self.generation)
            if previous is not None:
                context = context.with_previous(previous)
            inputs = await self.renders.inputs(operation.inputs, context)
        except TemplateError as exc:
            raise AdmissionError(
                reasons.TEMPLATE_ERROR, f"DatabaseClass {self.class_name} operations.{op}: {exc}"
            ) from None
        return operation.name, inputs

    async def check_secret_format(self) -> None:
        """Compile the secretFormat templates before any procedure runs (syntax, sandbox rules)."""
        try:
            await self.renders.validate(self.klass.secret_format)
        except TemplateError as exc:
            raise AdmissionError(
                reasons.TEMPLATE_ERROR, f"DatabaseClass {self.class_name} secretFormat {exc.key!r}: {exc}"
            ) from None

    async def secret_data(self, result: Mapping[str, str]) -> dict[str, str]:
        """The Secret's data: the class's secretFormat, or the Service Binding layout without one."""
        if self.klass.secret_format:
            try:
                return await self.renders.secret(self.klass.secret_format, self.context.with_result(result))
            except TemplateError as exc:
                raise SecretRenderError(f"DatabaseClass {self.class_name}: {exc}") from None
        try:
            return binding_data(
                result, driver=self.driver, endpoint_host=self.endpoint_host, endpoint_port=self.endpoint_port
            )
        except MissingResultKey as exc:
            raise SecretRenderError(f"DatabaseClass {self.class_name}: {exc}") from None


class _ClassCache:
    """Parsed DatabaseClasses keyed by (name, resourceVersion): parse once per change, not per reconcile."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[str, DatabaseClassSpec | AdmissionError]] = {}

    def get(self, name: str, raw: Mapping[str, Any]) -> DatabaseClassSpec:
        rv = str((raw.get("metadata") or {}).get("resourceVersion") or "")
        hit = self._parsed.get(name)
        if hit is None or hit[0] != rv or not rv:
            hit = (rv, self._parse(name, raw))
            self._parsed[name] = hit
        value = hit[1]
        if isinstance(value, AdmissionError):
            raise value
        return value

    @staticmethod
    def _parse(name: str, raw: Mapping[str, Any]) -> DatabaseClassSpec | AdmissionError:
        driver = ((raw.get("spec") or {}).get("driver")) or ""
        if driver not in DRIVER_KINDS:
            return AdmissionError(
                reasons.DRIVER_NOT_SUPPORTED,
                f"DatabaseClass {name} names driver {driver!r}; this operator supports {', '.join(DRIVER_KINDS)}",
            )
        try:
            return DatabaseClass.model_validate(raw).spec
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err['msg']}" for err in exc.errors()
            )
            return AdmissionError(
                reasons.CLASS_INVALID, f"DatabaseClass {name} is invalid: {problems}"[:1000]
            )


def _lenient_params(klass: DatabaseClassSpec, params: Mapping[str, str]) -> dict[str, str]:
    resolved = dict(params)
    for spec in klass.parameters:
        if spec.name not in resolved:
            resolved[spec.name] = spec.default if spec.default is not None else ""
    return resolved


def _refuse_unsendable(driver: str, params: Mapping[str, str]) -> None:
    """A value the DBMS can never store fails every retry alike: refuse it here (PostgreSQL text has
    no NUL character)."""
    if driver == "postgres":
        bad = sorted(k for k, v in params.items() if "\x00" in v)
        if bad:
            raise AdmissionError(
                reasons.INVALID_PARAMETERS,
                f"params {', '.join(bad)}: a NUL character cannot be stored by PostgreSQL; remove it",
            )


class Admission:
    def __init__(
        self,
        state: ConfigState,
        get_class: Callable[[str], Mapping[str, Any] | None],
        get_namespace: Callable[[str], Mapping[str, Any] | None] | None,
        endpoint_driver: Callable[[str], str | None],
    ) -> None:
        self.state = state
        self._get_class = get_class
        self._get_namespace = get_namespace
        self._endpoint_driver = endpoint_driver
        self._classes = _ClassCache()

    def admit(self, db: Database, *, strict: bool) -> Plan:
        """Resolve endpoint → class → params; `strict` for create (see the module docstring)."""
        state = self.state
        namespace = db.metadata.namespace or ""
        if not state.found:
            raise AdmissionError(
                reasons.CONFIG_NOT_FOUND,
                f"OperatorConfig {state.config_ref} does not exist; no endpoint is configured",
            )
        binding = state.bindings.get(db.spec.endpoint)
        if binding is None:
            known = ", ".join(sorted(state.bindings)) or "none"
            raise AdmissionError(
                reasons.ENDPOINT_NOT_FOUND,
                f"endpoint {db.spec.endpoint!r} is not declared in OperatorConfig {state.config_ref} "
                f"(declared: {known})",
            )
        raw_class = self._get_class(binding.class_name)
        if raw_class is None:
            raise AdmissionError(
                reasons.CLASS_NOT_FOUND,
                f"DatabaseClass {binding.class_name} (bound to endpoint {binding.endpoint}) does not exist",
            )
        klass = self._classes.get(binding.class_name, raw_class)
        if strict and self._needs_labels(binding, namespace):
            labels = self._namespace_labels(namespace)
            if labels is None:
                # A cache miss is not an empty label set: NotIn / DoesNotExist would admit it.
                raise NotReadyError(f"namespace {namespace} is not in the operator's cache yet")
        else:
            labels = None
        if strict and not binding.allows(namespace, labels):
            raise AdmissionError(
                reasons.NAMESPACE_NOT_ALLOWED,
                f"endpoint {binding.endpoint} does not allow Databases in namespace {namespace}",
            )
        if strict:
            try:
                params = klass.resolve_params(db.spec.params)
            except ParameterError as exc:
                raise AdmissionError(reasons.INVALID_PARAMETERS, "; ".join(exc.problems)) from None
            _refuse_unsendable(klass.driver, params)
        else:
            params = _lenient_params(klass, db.spec.params)
        if binding.problem is not None:
            raise AdmissionError(binding.problem_reason, binding.problem)
        live_driver = self._endpoint_driver(binding.endpoint)
        if live_driver is None:
            raise NotReadyError(f"endpoint {binding.endpoint} is not open yet")
        if live_driver != klass.driver:
            raise NotReadyError(
                f"endpoint {binding.endpoint} is being re-opened for driver {klass.driver} (was {live_driver})"
            )
        context = TemplateContext.from_database(db, params=params, endpoint_name=binding.endpoint)
        return Plan(
            endpoint=binding.endpoint,
            binding=binding,
            class_name=binding.class_name,
            klass=klass,
            params=params,
            context=context,
            endpoint_host=binding.host,
            endpoint_port=binding.port,
            generation=db.status.credential_generation or 0,
        )

    def _needs_labels(self, binding: Binding, namespace: str) -> bool:
        """Does the endpoint's namespace rule depend on the namespace's labels?"""
        rule = binding.spec.allowed_namespaces
        return (
            self._get_namespace is not None
            and rule is not None
            and rule.selector is not None
            and namespace not in rule.names
        )

    def _namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        if self._get_namespace is None:
            return None
        raw = self._get_namespace(namespace)
        if raw is None:
            return None
        labels: Mapping[str, str] = (raw.get("metadata") or {}).get("labels") or {}
        return labels
