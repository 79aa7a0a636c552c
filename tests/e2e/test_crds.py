"""The CRDs against a real kube-apiserver: schemas, defaults, CEL rules, printer columns, explain.

Every CEL rule in deploy/crds/ is exercised with an accepted and a rejected case, and objects read
back from the server must parse into the pydantic models (so server-side defaults and the models
agree too).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbaasctl.api import Database, DatabaseClass, DatabaseStatus, OperatorConfig, set_condition

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def manifest(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> str:
    return yaml.safe_dump(
        {"apiVersion": "dbaasctl.io/v1", "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}
    )


def apply(kubectl: Kubectl, namespace: str | None, text: str) -> subprocess.CompletedProcess[str]:
    ns = ["-n", namespace] if namespace else []
    return kubectl("apply", *ns, "-f", "-", input=text, check=False)


def rejected(kubectl: Kubectl, namespace: str | None, text: str, *messages: str) -> str:
    proc = apply(kubectl, namespace, text)
    assert proc.returncode != 0, f"accepted but should be rejected:\n{text}"
    for message in messages:
        assert message in proc.stderr, proc.stderr
    return proc.stderr


def accepted(kubectl: Kubectl, namespace: str | None, text: str) -> None:
    proc = apply(kubectl, namespace, text)
    assert proc.returncode == 0, proc.stderr


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


DB = "Database"


def test_crds_are_established_with_names_and_categories(crds: Path, kubectl: Kubectl) -> None:
    for name, short in [("databases.dbaasctl.io", ["db"]), ("databaseclasses.dbaasctl.io", ["dbc"])]:
        crd = get_json(kubectl, "crd", name)
        assert crd["spec"]["names"]["shortNames"] == short
        assert crd["spec"]["names"]["categories"] == ["dbaas"]
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established[0]["status"] == "True"
    assert get_json(kubectl, "crd", "operatorconfigs.dbaasctl.io")["spec"]["scope"] == "Namespaced"
    assert get_json(kubectl, "crd", "databaseclasses.dbaasctl.io")["spec"]["scope"] == "Cluster"


def test_database_defaults_and_model_round_trip(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    accepted(kubectl, namespace, manifest(DB, "orders", {"endpoint": "pg-eu", "params": {"size": "10"}}))
    raw = get_json(kubectl, "db", "orders", "-n", namespace)
    assert raw["spec"]["deletionPolicy"] == "Delete"  # server-side default
    db = Database.model_validate(raw)
    assert db.spec.deletion_policy == "Delete"
    assert db.metadata.uid
    assert db.secret_name == "orders-credentials"


def test_database_without_endpoint_is_rejected(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    rejected(
        kubectl,
        namespace,
        manifest(DB, "no-endpoint", {"params": {"a": "b"}}),
        "spec.endpoint: Required value",
    )
    rejected(kubectl, namespace, manifest(DB, "empty-endpoint", {"endpoint": ""}), "spec.endpoint")


@pytest.mark.parametrize("endpoint", ["Upper", "under_score", "-lead", "trail-", "dot.ted", "x" * 64])
def test_endpoint_must_be_a_dns_label(crds: Path, kubectl: Kubectl, namespace: str, endpoint: str) -> None:
    rejected(kubectl, namespace, manifest(DB, "bad-endpoint", {"endpoint": endpoint}), "spec.endpoint")


def test_params_and_secret_name_bounds(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    too_many = {f"k{i}": "v" for i in range(65)}
    rejected(kubectl, namespace, manifest(DB, "many", {"endpoint": "e", "params": too_many}), "spec.params")
    rejected(
        kubectl,
        namespace,
        manifest(DB, "long", {"endpoint": "e", "params": {"k": "x" * 65537}}),
        "spec.params",
    )
    rejected(kubectl, namespace, manifest(DB, "longkey", {"endpoint": "e", "params": {"k" * 129: "v"}}),
             "params keys must be 1 to 128 characters long")  # fmt: skip
    rejected(
        kubectl,
        namespace,
        manifest(DB, "badsecret", {"endpoint": "e", "secretName": "Not_Valid"}),
        "spec.secretName",
    )
    rejected(kubectl, namespace, manifest(DB, "badpolicy", {"endpoint": "e", "deletionPolicy": "Orphan"}),
             'supported values: "Delete", "Retain"')  # fmt: skip
    accepted(
        kubectl,
        namespace,
        manifest(DB, "big", {"endpoint": "e", "params": {"k": "x" * 65536, "q": "'\";--"}}),
    )


IMMUTABLE = "spec.endpoint and spec.params are immutable once the create procedure was called"


def _mark(kubectl: Kubectl, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Write status as the operator would (the CEL rule reads the stored status)."""
    kubectl("patch", "db", name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))  # fmt: skip


def test_endpoint_and_params_editable_until_create_is_called(
    crds: Path, kubectl: Kubectl, namespace: str
) -> None:
    typo = {"endpoint": "pg-ue", "params": {"size": "1O"}}
    accepted(kubectl, namespace, manifest(DB, "typo", typo))
    accepted(kubectl, namespace, manifest(DB, "typo", {"endpoint": "pg-eu", "params": {"size": "10"}}))
    _mark(
        kubectl,
        namespace,
        "typo",
        {"pendingOperation": {"name": "create", "startedAt": "2026-01-01T00:00:00Z"}},
    )
    rejected(
        kubectl, namespace, manifest(DB, "typo", {"endpoint": "pg-us", "params": {"size": "10"}}), IMMUTABLE
    )
    _mark(kubectl, namespace, "typo", {"pendingOperation": None})  # the call failed without effect
    accepted(kubectl, namespace, manifest(DB, "typo", {"endpoint": "pg-us", "params": {"size": "10"}}))


def test_immutable_fields(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    spec = {"endpoint": "pg-eu", "params": {"size": "10"}}
    accepted(kubectl, namespace, manifest(DB, "imm", spec))
    _mark(kubectl, namespace, "imm", {"provisionedAt": "2026-01-01T00:00:00Z"})
    rejected(kubectl, namespace, manifest(DB, "imm", {**spec, "endpoint": "pg-us"}), IMMUTABLE)
    rejected(kubectl, namespace, manifest(DB, "imm", {**spec, "params": {"size": "11"}}), IMMUTABLE)
    rejected(
        kubectl, namespace, manifest(DB, "imm", {**spec, "params": {"size": "10", "extra": "x"}}), IMMUTABLE
    )
    no_params = {"endpoint": "pg-eu"}
    rejected(kubectl, namespace, manifest(DB, "imm", no_params), IMMUTABLE)
    rejected(kubectl, namespace, manifest(DB, "imm", {**spec, "secretName": "other"}),
             "spec.secretName is immutable: the credentials already live in that Secret")  # fmt: skip
    # Spelling out the default secret name changes nothing, so it is allowed.
    accepted(kubectl, namespace, manifest(DB, "imm", {**spec, "secretName": "imm-credentials"}))
    accepted(kubectl, namespace, manifest(DB, "imm", spec))  # and dropping it again, too
    rejected(
        kubectl,
        namespace,
        manifest(DB, "imm", {**spec, "secretName": "imm-creds"}),
        "spec.secretName is immutable",
    )
    # deletionPolicy and metadata stay mutable.
    accepted(
        kubectl,
        namespace,
        manifest(DB, "imm", {**spec, "secretName": "imm-credentials", "deletionPolicy": "Retain"}),
    )
    accepted(kubectl, namespace, manifest(DB, "imm", {**spec, "secretName": "imm-credentials", "deletionPolicy": "Delete"},
                                          labels={"team": "a"}, annotations={"dbaasctl.io/rotate": "r1"}))  # fmt: skip
    db = Database.model_validate(get_json(kubectl, "db", "imm", "-n", namespace))
    assert db.metadata.labels == {"team": "a"}
    assert db.spec.params == {"size": "10"}


def test_params_absent_and_empty_are_the_same(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    accepted(kubectl, namespace, manifest(DB, "empty", {"endpoint": "e"}))
    accepted(kubectl, namespace, manifest(DB, "empty", {"endpoint": "e", "params": {}}))


def test_status_subresource_and_printer_columns(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    accepted(kubectl, namespace, manifest(DB, "cols", {"endpoint": "maria-eu"}))
    status = DatabaseStatus(secret_name="cols-credentials", endpoint="maria-eu", observed_generation=1)
    set_condition(
        status.conditions, "Ready", "True", "Provisioned", "database created", observed_generation=1
    )
    set_condition(status.conditions, "Rotating", "False", "Idle", "")
    patch = json.dumps({"status": status.to_api(), "spec": {"endpoint": "ignored-through-status"}})
    kubectl("patch", "db", "cols", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)
    out = kubectl("get", "db", "cols", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "REASON", "ENDPOINT", "SECRET", "DELETING", "AGE"]
    assert out[1].split()[:5] == ["cols", "True", "Provisioned", "maria-eu", "cols-credentials"]
    db = Database.model_validate(get_json(kubectl, "db", "cols", "-n", namespace))
    assert db.spec.endpoint == "maria-eu"  # the status subresource does not write spec
    assert db.status.conditions[0].reason == "Provisioned"
    assert "cols" in kubectl("get", "dbaas", "-n", namespace).stdout


def test_explain_shows_descriptions(crds: Path, kubectl: Kubectl) -> None:
    out = kubectl("explain", "db.spec").stdout
    assert "Name of the DBMS endpoint" in out
    assert "deletionPolicy" in out
    assert "Immutable" in out
    assert "stored procedure" in kubectl("explain", "dbc.spec.operations").stdout
    assert "Prefer secretKeyRef" in kubectl("explain", "operatorconfig.spec.dbms.endpoints.dsn").stdout
    retain = " ".join(kubectl("explain", "db.spec.deletionPolicy").stdout.split())
    assert "the database and the Secret are kept" in retain
    assert "only removes the Secret" not in retain


CLASS_SPEC: dict[str, Any] = {
    "driver": "mariadb",
    "operations": {
        "create": {
            "name": "sp_create_db_rowset_eav",
            "inputs": {"0": "{{ .Metadata.name }}", "1": "{{ .Parameters.x }}"},
        },
        "delete": {"name": "dbaas.sp_delete", "inputs": {"0": "{{ .Metadata.name }}"}},
        "rotate": {"name": "sp_rotate", "inputs": {"0": "{{ .Metadata.name }}"}},
    },
    "secretFormat": {"password": "{{ .Result.password }}", "db.name": "{{ .Result.dbName }}"},
    "parameters": [{"name": "x", "default": "d", "maxLength": 10}],
    "rotation": {"interval": "720h"},
}


def class_with(name: str, **changes: Any) -> str:
    spec = json.loads(json.dumps(CLASS_SPEC))
    spec.update(changes)
    return manifest("DatabaseClass", name, spec)


def test_database_class_validation(crds: Path, kubectl: Kubectl, request: pytest.FixtureRequest) -> None:
    name = f"dbc-{abs(hash(request.node.nodeid)) % 10**8}"
    request.addfinalizer(lambda: kubectl("delete", "dbc", name, "--ignore-not-found", check=False))
    accepted(kubectl, None, class_with(name))
    parsed = DatabaseClass.model_validate(get_json(kubectl, "dbc", name))
    assert parsed.spec.parameters[0].required is False  # server-side default
    assert parsed.spec.rotation is not None
    assert parsed.spec.rotation.interval is not None
    assert parsed.spec.rotation.interval.total_seconds() == 720 * 3600

    rejected(kubectl, None, class_with("bad-driver", driver="oracle"), 'Unsupported value: "oracle"')
    gap = {**CLASS_SPEC["operations"], "create": {"name": "c", "inputs": {"0": "a", "2": "b"}}}
    rejected(kubectl, None, class_with("gap", operations=gap),
             'mysql and mariadb procedures take their inputs by position: operations.create.inputs')  # fmt: skip
    named = {**CLASS_SPEC["operations"], "delete": {"name": "d", "inputs": {"k8sName": "a"}}}
    rejected(kubectl, None, class_with("named", operations=named), "operations.delete.inputs keys")
    accepted_pg = class_with(f"{name}-pg", driver="postgres", operations=named)
    request.addfinalizer(lambda: kubectl("delete", "dbc", f"{name}-pg", "--ignore-not-found", check=False))
    accepted(kubectl, None, accepted_pg)
    injected = {**CLASS_SPEC["operations"], "create": {"name": "sp(); DROP TABLE x; --"}}
    rejected(kubectl, None, class_with("inj", operations=injected), "spec.operations.create.name")
    bad_key = {**CLASS_SPEC["operations"], "create": {"name": "c", "inputs": {"a b": "x"}}}
    rejected(kubectl, None, class_with("badkey", driver="postgres", operations=bad_key),
             "input keys must be parameter names")  # fmt: skip
    no_delete = {"create": CLASS_SPEC["operations"]["create"]}
    rejected(
        kubectl, None, class_with("nodelete", operations=no_delete), "spec.operations.delete: Required value"
    )
    rejected(
        kubectl,
        None,
        class_with("fast", rotation={"interval": "500ms"}),
        "rotation.interval must be at least 1s",
    )
    rejected(kubectl, None, class_with("days", rotation={"interval": "30d"}), "spec.rotation.interval")
    rejected(kubectl, None, class_with("nosecret", secretFormat={}), "spec.secretFormat")
    rejected(
        kubectl,
        None,
        class_with("badsecretkey", secretFormat={"a/b": "x"}),
        "secretFormat keys must be valid",
    )
    dup = [{"name": "x"}, {"name": "x"}]
    rejected(kubectl, None, class_with("dupparam", parameters=dup), "spec.parameters[1]")


def test_two_phase_rotation_fields(crds: Path, kubectl: Kubectl, request: pytest.FixtureRequest) -> None:
    name = f"dbc-ab-{abs(hash(request.node.nodeid)) % 10**8}"
    request.addfinalizer(lambda: kubectl("delete", "dbc", name, "--ignore-not-found", check=False))
    retire = {"name": "sp_retire", "inputs": {"0": "{{ previous.username }}"}}
    operations = {**CLASS_SPEC["operations"], "retire": retire}
    rotation = {"interval": "720h", "gracePeriod": "10m", "window": {"start": "22:30", "end": "02:00"}}
    accepted(kubectl, None, class_with(name, operations=operations, rotation=rotation))
    parsed = DatabaseClass.model_validate(get_json(kubectl, "dbc", name))
    assert parsed.spec.operations.retire is not None
    assert parsed.spec.grace_period is not None
    assert parsed.spec.grace_period.total_seconds() == 600
    assert parsed.spec.rotation is not None
    assert parsed.spec.rotation.window is not None
    assert parsed.spec.rotation.window.minutes() == (22 * 60 + 30, 120)

    gap = {**operations, "retire": {"name": "r", "inputs": {"1": "x"}}}
    rejected(kubectl, None, class_with("retiregap", operations=gap), "operations.retire.inputs keys")
    rejected(kubectl, None, class_with("badgrace", rotation={"gracePeriod": "5 minutes"}), "gracePeriod")
    rejected(kubectl, None, class_with("badwin", rotation={"window": {"start": "2:00", "end": "05:00"}}),
             "spec.rotation.window.start")  # fmt: skip
    rejected(kubectl, None, class_with("emptywin", rotation={"window": {"start": "03:00", "end": "03:00"}}),
             "rotation.window.start and end must differ")  # fmt: skip


def config(endpoints: list[dict[str, Any]], **spec: Any) -> str:
    return manifest(
        "OperatorConfig", "cfg", {"dbms": [{"databaseClassName": "c", "endpoints": endpoints}], **spec}
    )


def test_operator_config_validation(crds: Path, kubectl: Kubectl, namespace: str) -> None:
    both = {"name": "pg", "dsn": "postgres://h/db", "secretKeyRef": {"name": "s", "key": "dsn"}}
    rejected(kubectl, namespace, config([both]), "set exactly one of dsn or secretKeyRef")
    rejected(kubectl, namespace, config([{"name": "pg"}]), "set exactly one of dsn or secretKeyRef")
    rejected(kubectl, namespace, config([{"name": "Bad_Name", "dsn": "x"}]), "name")
    rejected(
        kubectl, namespace, config([{"name": "a", "dsn": "x"}, {"name": "a", "dsn": "y"}]), "Duplicate value"
    )
    rejected(
        kubectl,
        namespace,
        config([{"name": "a", "dsn": "x", "operationTimeout": "soon"}]),
        "operationTimeout",
    )
    rejected(kubectl, namespace, config([{"name": "a", "dsn": "x"}], rps=-1), "spec.rps")
    bad_selector = {"selector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}
    rejected(kubectl, namespace, config([{"name": "a", "dsn": "x", "allowedNamespaces": bad_selector}]),
             "In and NotIn need values")  # fmt: skip
    full = {
        "name": "pg-eu",
        "secretKeyRef": {"name": "dsns", "key": "pg-eu"},
        "rps": 0.5,
        "burst": 2,
        "maxConcurrentOperations": 4,
        "operationTimeout": "1m30s",
        "allowedNamespaces": {
            "names": ["shop"],
            "selector": {
                "matchLabels": {"dbaas": "on"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}],
            },
        },
    }
    accepted(kubectl, namespace, config([full, {"name": "pg-us", "dsn": "postgres://u:p@h/db"}], rps=2))
    cfg = OperatorConfig.model_validate(get_json(kubectl, "operatorconfig", "cfg", "-n", namespace))
    assert cfg.spec.keepalive == 30  # server-side default
    eps = {ep.name: ep for _, ep in cfg.spec.endpoints()}
    assert eps["pg-eu"].operation_timeout is not None
    assert eps["pg-eu"].operation_timeout.total_seconds() == 90
    assert eps["pg-eu"].allows("other", {"dbaas": "on", "tier": "1"})
    assert not eps["pg-eu"].allows("other", {"dbaas": "on"})
    health = {"endpoints": [{"name": "pg-eu", "healthy": False, "lastCheckTime": "2024-01-01T00:00:00Z",
                             "lastError": "connection refused"}]}  # fmt: skip
    kubectl("patch", "operatorconfig", "cfg", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": health}))  # fmt: skip
    cfg = OperatorConfig.model_validate(get_json(kubectl, "operatorconfig", "cfg", "-n", namespace))
    assert cfg.status.endpoints[0].healthy is False
