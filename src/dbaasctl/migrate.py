"""`dbaasctl migrate-config FILE`: the reference operator's config file as a dbaasctl OperatorConfig.

bedag/kubernetes-dbaas read one file at start-up that mixed the endpoints (`dbms`, `rps`, `keepalive`)
with controller-runtime manager settings (`health`, `metrics`, `leaderElection`, `webhook`, ...). Here
the endpoints are a live OperatorConfig and the manager settings are `dbaasctl run` flags, so pasting the
old file into an OperatorConfig is refused by the API server (unknown fields). This command splits it:
YAML for `kubectl apply` on stdout (inline DSNs moved into a Secret), and the flags to set as comments
at the top, with every key that has no counterpart named and explained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from dbaasctl.api.common import parse_duration
from dbaasctl.api.database import API_VERSION
from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.redaction import redact

__all__ = ["Migration", "MigrationError", "migrate", "run"]

_SPEC_KEYS = ("rps", "keepalive", "dbms")


class MigrationError(Exception):
    """The file cannot be migrated; the message is meant for the user."""


@dataclass
class Migration:
    documents: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _seconds(value: Any) -> str:
    seconds = parse_duration(value).total_seconds()
    return f"{seconds:g}"


def _bool_flag(name: str) -> Callable[[Any], str]:
    return lambda value: f"--{name}" if value in (True, "true", "True") else f"--no-{name}"


def _value_flag(name: str, convert: Callable[[Any], str] = str) -> Callable[[Any], str]:
    return lambda value: f"--{name}={convert(value)}"


#: reference key -> how it becomes a `dbaasctl run` flag.
FLAGS: dict[str, Callable[[Any], str]] = {
    "metrics.bindAddress": _value_flag("metrics-addr"),
    "health.healthProbeBindAddress": _value_flag("health-addr"),
    "leaderElection.leaderElect": _bool_flag("leader-elect"),
    "leaderElection.resourceName": _value_flag("leader-election-id"),
    "leaderElection.leaseDuration": _value_flag("lease-duration", _seconds),
    "leaderElection.renewDeadline": _value_flag("renew-deadline", _seconds),
    "leaderElection.retryPeriod": _value_flag("retry-period", _seconds),
    "cacheNamespace": _value_flag("watch-namespaces"),
}
#: reference key (or key prefix) -> why it has no counterpart.
DROPPED: dict[str, str] = {
    "webhook": "no admission webhook: the CRDs validate with CEL rules",
    "health.readinessEndpointName": "the probes are fixed at /readyz and /healthz",
    "health.livenessEndpointName": "the probes are fixed at /readyz and /healthz",
    "leaderElection.resourceLock": "leader election always uses a coordination.k8s.io Lease",
    "leaderElection.resourceNamespace": "the Lease lives in the operator's namespace (--namespace)",
    "syncPeriod": "Databases are resynced every 10 minutes; not configurable",
    "gracefulShutDown": "shutdown waits for in-flight procedures (terminationGracePeriodSeconds)",
}


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _settings_part(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the endpoint part, the manager settings) of the old file, bare or wrapped in an OperatorConfig."""
    if isinstance(doc.get("spec"), dict):
        body = dict(doc["spec"])
    else:
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    spec = {k: body.pop(k) for k in _SPEC_KEYS if k in body}
    return spec, body


def migrate(doc: dict[str, Any], *, name: str, namespace: str) -> Migration:
    spec, settings = _settings_part(doc)
    if not spec.get("dbms"):
        raise MigrationError("no dbms list found: this does not look like a kubernetes-dbaas config")
    dsn_secret = f"{name}-dsn"
    dsns: dict[str, str] = {}
    for dbms in spec["dbms"]:
        for ep in dbms.get("endpoints") or []:
            if isinstance(ep, dict) and ep.get("dsn") is not None:
                dsns[str(ep.get("name"))] = str(ep.pop("dsn"))
                ep["secretKeyRef"] = {"name": dsn_secret, "key": str(ep.get("name"))}
    config = {
        "apiVersion": API_VERSION,
        "kind": "OperatorConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    try:
        OperatorConfig.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MigrationError(
            f"the endpoints do not form a valid OperatorConfig: {redact(problems)}"
        ) from None
    migration = Migration(documents=[])
    if dsns:
        migration.documents.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": dsn_secret, "namespace": namespace},
                "type": "Opaque",
                "stringData": dsns,
            }
        )
        migration.notes.append(
            f"inline DSNs moved to Secret {namespace}/{dsn_secret} (one key per endpoint); "
            "better create it yourself than keep passwords in a file"
        )
    migration.documents.append(config)
    for key, value in _flatten(settings).items():
        if key in FLAGS:
            try:
                migration.flags.append(FLAGS[key](value))
            except ValueError as exc:
                migration.notes.append(f"{key}: {exc}")
            continue
        reason = next((why for k, why in DROPPED.items() if key == k or key.startswith(f"{k}.")), None)
        migration.notes.append(f"{key} dropped: {reason}" if reason else f"{key} dropped: unknown key")
    migration.flags.append(f"--namespace={namespace}")
    migration.flags.append(f"--config-name={name}")
    return migration


def write(migration: Migration, out: TextIO) -> None:
    out.write("# Migrated from a kubernetes-dbaas config file. Apply with: kubectl apply -f <this file>\n")
    out.write("# Run the operator with (Helm: operator.extraArgs, or the chart's own values):\n")
    out.write(f"#   dbaasctl run {' '.join(migration.flags)}\n")
    for note in migration.notes:
        out.write(f"# note: {note}\n")
    yaml.safe_dump_all(migration.documents, out, sort_keys=False, explicit_start=True, allow_unicode=True)


def run(path: Path, out: TextIO, *, name: str, namespace: str) -> None:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except OSError as exc:
        raise MigrationError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise MigrationError(f"{path}: not valid YAML") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise MigrationError(f"{path}: expected one YAML mapping (the operator config file)")
    # A Helm ConfigMap wrapping the file (the reference chart's form): migrate its one data entry.
    doc = docs[0]
    if doc.get("kind") == "ConfigMap":
        entries = list((doc.get("data") or {}).values())
        if len(entries) != 1:
            raise MigrationError(f"{path}: the ConfigMap should hold exactly one config file")
        doc = yaml.safe_load(entries[0]) or {}
    write(migrate(doc, name=name, namespace=namespace), out)
