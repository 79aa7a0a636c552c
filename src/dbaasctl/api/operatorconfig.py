"""`OperatorConfig` (dbaasctl.io/v1, namespaced): the sysadmin's list of DBMS endpoints.

Unlike the reference operator, where it was a config file read once at boot, this is a live
resource in the operator's namespace; endpoints come and go without a restart. Mirrors
deploy/crds/operatorconfigs.dbaasctl.io.yaml.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from dbaasctl.api.common import ApiModel, Duration, LabelSelector, ObjectMeta, Timestamp
from dbaasctl.api.conditions import Condition
from dbaasctl.api.database import API_VERSION

__all__ = [
    "AllowedNamespaces",
    "DbmsSpec",
    "EndpointHealth",
    "EndpointSpec",
    "OperatorConfig",
    "OperatorConfigSpec",
    "OperatorConfigStatus",
    "SecretKeyRef",
    "TlsPolicy",
]

KIND = "OperatorConfig"
PLURAL = "operatorconfigs"


class SecretKeyRef(ApiModel):
    name: str
    key: str


class AllowedNamespaces(ApiModel):
    names: list[str] = Field(default_factory=list)
    selector: LabelSelector | None = None

    def allows(self, namespace: str, labels: Mapping[str, str] | None) -> bool:
        """Listed by name, or its labels match the selector."""
        if namespace in self.names:
            return True
        return self.selector is not None and self.selector.matches(labels)


TlsMinimum = Literal["plaintext", "encrypted", "verified"]
TlsObserved = Literal["unknown", "plaintext", "encrypted", "verified"]


class TlsPolicy(ApiModel):
    """The weakest DBMS link allowed; a weaker one is refused before any procedure runs."""

    minimum: TlsMinimum = "plaintext"


class EndpointSpec(ApiModel):
    name: str
    dsn: str | None = None
    secret_key_ref: SecretKeyRef | None = None
    rps: float | None = None
    burst: int | None = None
    max_concurrent_operations: int | None = None
    operation_timeout: Duration | None = None
    allowed_namespaces: AllowedNamespaces | None = None
    tls: TlsPolicy | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EndpointSpec:
        if (self.dsn is None) == (self.secret_key_ref is None):
            raise ValueError(f"endpoint {self.name!r}: set exactly one of dsn or secretKeyRef")
        return self

    def allows(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """May a Database in this namespace use the endpoint? No restriction means yes."""
        return self.allowed_namespaces is None or self.allowed_namespaces.allows(namespace, labels)


class DbmsSpec(ApiModel):
    database_class_name: str
    endpoints: list[EndpointSpec]


#: Applied when neither the endpoint nor the config says otherwise.
DEFAULT_KEEPALIVE_SECONDS = 30
DEFAULT_OPERATION_TIMEOUT = timedelta(seconds=30)


class OperatorConfigSpec(ApiModel):
    rps: float = 0
    keepalive: int = DEFAULT_KEEPALIVE_SECONDS
    tls: TlsPolicy | None = None
    dbms: list[DbmsSpec]

    @model_validator(mode="after")
    def _unique_endpoints(self) -> OperatorConfigSpec:
        seen: set[str] = set()
        for dbms in self.dbms:
            for ep in dbms.endpoints:
                if ep.name in seen:
                    raise ValueError(
                        f"endpoint name {ep.name!r} is used more than once; names must be unique"
                    )
                seen.add(ep.name)
        return self

    def endpoints(self) -> Iterator[tuple[str, EndpointSpec]]:
        """Every endpoint with the name of its DatabaseClass."""
        for dbms in self.dbms:
            for ep in dbms.endpoints:
                yield dbms.database_class_name, ep

    def endpoint_rps(self, ep: EndpointSpec) -> float:
        """The endpoint's own rps, else the config-wide one; 0 means unlimited."""
        return self.rps if ep.rps is None else ep.rps

    def endpoint_tls_minimum(self, ep: EndpointSpec) -> TlsMinimum:
        """The endpoint's own TLS minimum, else the config-wide one, else plaintext."""
        policy = ep.tls or self.tls
        return policy.minimum if policy is not None else "plaintext"


class EndpointHealth(ApiModel):
    name: str
    #: None until the endpoint was first checked (keepalive 0 and no call yet).
    healthy: bool | None = None
    #: The last check, refreshed at a bounded interval so checks do not each cost a status write.
    last_check_time: Timestamp | None = None
    last_transition_time: Timestamp | None = None
    tls: TlsObserved | None = None
    #: Already passed through dbaasctl.redaction.redact(); never a raw driver message.
    last_error: str | None = None


class OperatorConfigStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    endpoints: list[EndpointHealth] = Field(default_factory=list)


class OperatorConfig(ApiModel):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: OperatorConfigSpec
    status: OperatorConfigStatus = Field(default_factory=OperatorConfigStatus)
