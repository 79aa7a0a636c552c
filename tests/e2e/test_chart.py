"""The Helm chart against the real API server: server-side dry-run, install, RBAC as the chart's
ServiceAccount, upgrade and uninstall (no --wait and no hooks: the test bed has no kubelet)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.controlplane import KCM_CONTROLLERS, REPO, ControlPlane, KubeTools
from testbed.polling import poll

CHART = REPO / "deploy" / "helm" / "dbaasctl"
DATA = Path(__file__).parent / "data"
ALL_VALUES = DATA / "chart-values-all.yaml"


def server_version(kube: KubeTools) -> str:
    return str(
        json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    ).lstrip("v")


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def write_values(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def servicemonitor_crd(control_plane: KubeTools) -> Iterator[None]:
    crd = DATA / "servicemonitor-crd.yaml"
    existed = (
        control_plane.kubectl("get", "crd", "servicemonitors.monitoring.coreos.com", check=False).returncode
        == 0
    )
    if not existed:
        control_plane.kubectl("apply", "-f", str(crd))
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd))
    yield
    if not existed:
        control_plane.kubectl("delete", "-f", str(crd), "--wait=false", check=False)


@pytest.fixture
def extra_namespaces(control_plane: KubeTools, namespace: str) -> Iterator[Callable[[str], str]]:
    """`make(suffix)` creates "<namespace>-<suffix>"; all are deleted after the test."""
    made: list[str] = []

    def make(suffix: str) -> str:
        name = f"{namespace}-{suffix}"[:63].rstrip("-")
        control_plane.create_namespace(name)
        made.append(name)
        return name

    yield make
    for name in made:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- dry-run --------------------------------------------------------------------------------------


@pytest.mark.parametrize("all_options", [False, True], ids=["defaults", "all-options"])
def test_rendered_manifests_pass_server_side_dry_run(
    control_plane: KubeTools,
    crds: Path,
    servicemonitor_crd: None,
    namespace: str,
    extra_namespaces: Callable[[str], str],
    all_options: bool,
) -> None:
    args = ["template", "all", str(CHART), "-n", namespace, f"--kube-version={server_version(control_plane)}"]
    if all_options:
        watched = [extra_namespaces("a"), extra_namespaces("b")]
        args += ["-f", str(ALL_VALUES), "--set", f"operator.watchNamespaces={{{','.join(watched)}}}"]
    manifest = control_plane.helm(*args).stdout
    docs = docs_of(manifest)
    applied = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert applied.returncode == 0, applied.stderr
    lines = [line for line in applied.stdout.splitlines() if line.strip()]
    assert len(lines) == len(docs), applied.stdout
    assert all(line.endswith("(server dry run)") for line in lines), applied.stdout
    kinds = {d["kind"] for d in docs}
    if all_options:
        assert {"ServiceMonitor", "NetworkPolicy", "DatabaseClass", "OperatorConfig", "Secret"} <= kinds


# --- install / upgrade / uninstall ----------------------------------------------------------------


def _install_values(namespace: str, dsn: str) -> dict[str, Any]:
    return {
        "operatorConfig": {
            "rps": 2,
            "dbms": [
                {
                    "databaseClassName": f"{namespace}-pg",
                    "endpoints": [
                        {"name": "pg-1", "dsn": dsn, "allowedNamespaces": {"names": [f"{namespace}-u"]}},
                    ],
                }
            ],
        },
        "databaseClasses": [
            {
                "name": f"{namespace}-pg",
                "spec": {
                    "driver": "postgres",
                    "operations": {
                        "create": {"name": "dbaas.create", "inputs": {"k8sName": "{{ metadata.name }}"}},
                        "delete": {"name": "dbaas.delete", "inputs": {"k8sName": "{{ metadata.name }}"}},
                    },
                    "secretFormat": {"password": "{{ result.password }}"},
                },
            }
        ],
    }


def test_install_upgrade_uninstall(
    control_plane: KubeTools,
    crds: Path,
    namespace: str,
    extra_namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    kube = control_plane
    user_ns = extra_namespaces("u")
    first = write_values(
        tmp_path / "v1.yaml", _install_values(namespace, "postgresql://a:first@db.example:5432/postgres")
    )
    notes = kube.helm("install", "rel", str(CHART), "-n", namespace, "-f", str(first)).stdout
    assert f"kubectl -n {namespace} rollout status deployment/rel-dbaasctl" in notes
    assert "Helm never upgrades" in notes

    manifest = kube.helm("get", "manifest", "rel", "-n", namespace).stdout
    docs = docs_of(manifest)
    got = json.loads(kube.kubectl("get", "-f", "-", "-o", "json", input=manifest).stdout)
    items = got["items"] if got.get("kind") == "List" else [got]
    assert sorted((i["kind"], i["metadata"]["name"]) for i in items) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in docs
    )
    assert {
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "PodDisruptionBudget",
        "OperatorConfig",
        "Secret",
        "DatabaseClass",
    } <= {d["kind"] for d in docs}
    config = kube.kubectl_json("-n", namespace, "get", "operatorconfig", "rel-dbaasctl")
    assert config["spec"]["dbms"][0]["endpoints"][0]["secretKeyRef"] == {
        "name": "rel-dbaasctl-dsn",
        "key": "pg-1",
    }
    assert "dsn" not in config["spec"]["dbms"][0]["endpoints"][0]

    # Objects the chart must never touch on uninstall: a user's Secret, a Database and the
    # operator-owned credential Secret of that Database.
    kube.kubectl("-n", user_ns, "create", "secret", "generic", "user-secret", "--from-literal=k=v")
    database = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "Database",
        "metadata": {"name": "db1", "namespace": user_ns},
        "spec": {"endpoint": "pg-1"},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(database))
    kube.kubectl("-n", user_ns, "create", "secret", "generic", "db1-credentials", "--from-literal=password=x")
    kube.kubectl("-n", user_ns, "label", "secret", "db1-credentials", "app.kubernetes.io/managed-by=dbaasctl")

    # Upgrade: more replicas, another log level, a changed DSN and a second endpoint by reference.
    changed = _install_values(namespace, "postgresql://a:second@db.example:5432/postgres")
    changed["replicaCount"] = 2
    changed["operator"] = {"logLevel": "debug"}
    changed["dsnSecrets"] = [
        {"name": "pg-2-dsn", "stringData": {"dsn": "postgresql://b:c@db2.example/postgres"}}
    ]
    changed["operatorConfig"]["dbms"][0]["endpoints"].append(
        {"name": "pg-2", "secretKeyRef": {"name": "pg-2-dsn", "key": "dsn"}}
    )
    second = write_values(tmp_path / "v2.yaml", changed)
    kube.helm("upgrade", "rel", str(CHART), "-n", namespace, "-f", str(second))
    deployment = kube.kubectl_json("-n", namespace, "get", "deployment", "rel-dbaasctl")
    assert deployment["spec"]["replicas"] == 2
    assert "--log-level=debug" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    config = kube.kubectl_json("-n", namespace, "get", "operatorconfig", "rel-dbaasctl")
    assert [e["name"] for e in config["spec"]["dbms"][0]["endpoints"]] == ["pg-1", "pg-2"]
    assert config["spec"]["rps"] == 2
    dsn = kube.kubectl_json("-n", namespace, "get", "secret", "rel-dbaasctl-dsn")["data"]["pg-1"]
    assert base64.b64decode(dsn).decode() == "postgresql://a:second@db.example:5432/postgres"
    assert kube.kubectl("-n", namespace, "get", "secret", "pg-2-dsn", check=False).returncode == 0
    status = json.loads(kube.helm("status", "rel", "-n", namespace, "-o", "json").stdout)
    assert status["version"] == 2
    assert status["info"]["status"] == "deployed"

    kube.helm("uninstall", "rel", "-n", namespace)
    for kind, name in [
        ("deployment", "rel-dbaasctl"),
        ("serviceaccount", "rel-dbaasctl"),
        ("role", "rel-dbaasctl"),
        ("rolebinding", "rel-dbaasctl"),
        ("role", "rel-dbaasctl-catalog"),
        ("rolebinding", "rel-dbaasctl-catalog"),
        ("service", "rel-dbaasctl-metrics"),
        ("poddisruptionbudget", "rel-dbaasctl"),
        ("operatorconfig", "rel-dbaasctl"),
        ("secret", "rel-dbaasctl-dsn"),
        ("secret", "pg-2-dsn"),
    ]:
        assert poll(
            lambda k=kind, n=name: kube.kubectl("-n", namespace, "get", k, n, check=False).returncode != 0, 60
        ), f"{kind}/{name} survived uninstall"
    for kind, name in [
        ("clusterrole", f"{namespace}-rel-dbaasctl"),
        ("clusterrolebinding", f"{namespace}-rel-dbaasctl"),
        ("clusterrole", f"{namespace}-rel-dbaasctl-edit"),
        ("clusterrole", f"{namespace}-rel-dbaasctl-view"),
        ("clusterrole", f"{namespace}-rel-dbaasctl-catalog"),
        ("clusterrolebinding", f"{namespace}-rel-dbaasctl-catalog"),
    ]:
        assert kube.kubectl("get", kind, name, check=False).returncode != 0, (
            f"{kind}/{name} survived uninstall"
        )

    # Left alone: CRDs (Helm never deletes crds/), the kept DatabaseClass, users' objects.
    for crd in ("databases.dbaasctl.io", "databaseclasses.dbaasctl.io", "operatorconfigs.dbaasctl.io"):
        kube.kubectl("get", "crd", crd)
    kept = kube.kubectl_json("get", "databaseclass", f"{namespace}-pg")
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    kube.kubectl("-n", user_ns, "get", "secret", "user-secret")
    kube.kubectl("-n", user_ns, "get", "secret", "db1-credentials")
    kube.kubectl("-n", user_ns, "get", "database", "db1")

    # A re-install adopts the kept class (same release name and namespace) instead of failing.
    kube.helm("install", "rel", str(CHART), "-n", namespace, "-f", str(first))
    kube.helm("uninstall", "rel", "-n", namespace)
    kube.kubectl("delete", "databaseclass", f"{namespace}-pg")


# --- RBAC as the chart's ServiceAccount (TokenRequest token, no admin credentials) -----------------


def can_i(kubeconfig: Path, *args: str) -> bool:
    proc = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "auth", "can-i", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    answer = proc.stdout.strip()
    assert answer in {"yes", "no"}, proc.stderr
    return answer == "yes"


DB = "databases.dbaasctl.io"
DBC = "databaseclasses.dbaasctl.io"
OC = "operatorconfigs.dbaasctl.io"


def test_service_account_gets_exactly_the_documented_access(
    control_plane: KubeTools, crds: Path, namespace: str, extra_namespaces: Callable[[str], str]
) -> None:
    kube = control_plane
    user_ns = extra_namespaces("u")
    kube.helm("install", "rel", str(CHART), "-n", namespace, "--set", "metrics.secure=true")
    sa = kube.service_account_kubeconfig(namespace, "rel-dbaasctl", create=False)
    lease = "rel-dbaasctl-leader"
    allowed = [
        ("list", DB, "-A"),
        ("watch", DB, "-A"),
        ("patch", DB, "-n", user_ns),
        ("patch", DB, "--subresource=status", "-n", user_ns),
        ("update", DB, "--subresource=finalizers", "-n", user_ns),
        ("list", "secrets", "-A"),
        ("watch", "secrets", "-A"),
        ("create", "secrets", "-n", user_ns),
        ("delete", "secrets", "-n", user_ns),
        ("create", "events.events.k8s.io", "-n", user_ns),
        ("patch", "events.events.k8s.io", "-n", user_ns),
        ("list", DBC),
        ("watch", DBC),
        ("list", "namespaces"),
        ("watch", "namespaces"),
        ("create", "leases.coordination.k8s.io", "-n", namespace),
        ("update", f"leases.coordination.k8s.io/{lease}", "-n", namespace),
        ("get", f"{OC}/rel-dbaasctl", "-n", namespace),
        ("list", f"{OC}/rel-dbaasctl", "-n", namespace),
        ("watch", f"{OC}/rel-dbaasctl", "-n", namespace),
        ("patch", f"{OC}/rel-dbaasctl", "--subresource=status", "-n", namespace),
        ("create", "tokenreviews.authentication.k8s.io"),
        ("create", "subjectaccessreviews.authorization.k8s.io"),
    ]
    denied = [
        ("create", DB, "-n", user_ns),
        ("delete", DB, "-n", user_ns),
        ("deletecollection", DB, "-n", user_ns),
        ("create", DBC),
        ("update", DBC),
        ("delete", DBC),
        ("list", OC, "-n", user_ns),
        ("list", OC, "-n", namespace),  # only its own, by name
        ("get", f"{OC}/another-release", "-n", namespace),
        ("update", OC, "-n", namespace),
        ("create", OC, "-n", namespace),
        ("update", "leases.coordination.k8s.io/somebody-else", "-n", namespace),
        ("list", "leases.coordination.k8s.io", "-n", namespace),
        ("get", "configmaps", "-n", namespace),
        ("list", "pods", "-A"),
        ("create", "namespaces"),
        ("create", "rolebindings", "-n", user_ns),
        ("escalate", "clusterroles"),
        ("impersonate", "users"),
        ("get", "deployments", "-n", namespace),
        # Write verbs the operator never uses (it merge-patches, never PUTs).
        ("update", DB, "-n", user_ns),
        ("update", DB, "--subresource=status", "-n", user_ns),
        ("update", "secrets", "-n", user_ns),
        ("patch", DBC, "--subresource=status"),
        ("update", OC, "--subresource=status", "-n", namespace),
        ("patch", f"leases.coordination.k8s.io/{lease}", "-n", namespace),
        ("create", "events", "-n", user_ns),  # core/v1: the operator writes events.k8s.io/v1
    ]
    wrong = [a for a in allowed if not can_i(sa, *a)] + [d for d in denied if can_i(sa, *d)]
    assert not wrong, f"unexpected answers (allowed list first): {wrong}"
    kube.helm("uninstall", "rel", "-n", namespace)


def test_watch_namespaces_confine_database_and_secret_access(
    control_plane: KubeTools, crds: Path, namespace: str, extra_namespaces: Callable[[str], str]
) -> None:
    kube = control_plane
    watched, other = extra_namespaces("w"), extra_namespaces("o")
    kube.helm(
        "install", "rel", str(CHART), "-n", namespace, "--set", f"operator.watchNamespaces={{{watched}}}"
    )
    sa = kube.service_account_kubeconfig(namespace, "rel-dbaasctl", create=False)
    for args in [
        ("list", DB, "-n", watched),
        ("create", "secrets", "-n", watched),
        ("list", DBC),
        ("list", "secrets", "-n", namespace),
        ("list", "namespaces"),
    ]:
        assert can_i(sa, *args), args
    for args in [
        ("list", DB, "-A"),
        ("list", DB, "-n", other),
        ("create", "secrets", "-n", other),
        ("list", "secrets", "-A"),
        ("create", "secrets", "-n", namespace),
        ("create", "tokenreviews.authentication.k8s.io"),
    ]:
        assert not can_i(sa, *args), args
    kube.helm("uninstall", "rel", "-n", namespace)


# --- aggregated roles -----------------------------------------------------------------------------


def test_aggregated_roles_reach_edit_and_view(control_plane: KubeTools, crds: Path, namespace: str) -> None:
    kube = control_plane
    kube.helm("install", "rel", str(CHART), "-n", namespace)
    ours = {
        "edit": kube.kubectl_json("get", "clusterrole", f"{namespace}-rel-dbaasctl-edit"),
        "view": kube.kubectl_json("get", "clusterrole", f"{namespace}-rel-dbaasctl-view"),
    }
    # The server's own aggregating roles select ours by label.
    for builtin, mine in [
        ("admin", "edit"),
        ("edit", "edit"),
        ("admin", "view"),
        ("edit", "view"),
        ("view", "view"),
    ]:
        selectors = kube.kubectl_json("get", "clusterrole", builtin)["aggregationRule"][
            "clusterRoleSelectors"
        ]
        labels = ours[mine]["metadata"]["labels"]
        assert any(all(labels.get(k) == v for k, v in s.get("matchLabels", {}).items()) for s in selectors), (
            f"{builtin} does not aggregate {mine}"
        )
    view_selectors = kube.kubectl_json("get", "clusterrole", "view")["aggregationRule"][
        "clusterRoleSelectors"
    ]
    assert not any(
        all(ours["edit"]["metadata"]["labels"].get(k) == v for k, v in s.get("matchLabels", {}).items())
        for s in view_selectors
    ), "write access must not reach the view role"

    if isinstance(kube, ControlPlane) and "clusterrole-aggregation-controller" not in KCM_CONTROLLERS:
        kube.helm("uninstall", "rel", "-n", namespace)
        pytest.skip("the test bed's kube-controller-manager does not run clusterrole-aggregation-controller")

    for who, role in [("dev", "edit"), ("auditor", "view")]:
        kube.kubectl("-n", namespace, "create", "serviceaccount", who)
        kube.kubectl(
            "-n",
            namespace,
            "create",
            "rolebinding",
            who,
            f"--clusterrole={role}",
            f"--serviceaccount={namespace}:{who}",
        )
    dev = kube.service_account_kubeconfig(namespace, "dev", create=False)
    auditor = kube.service_account_kubeconfig(namespace, "auditor", create=False)
    assert poll(lambda: can_i(dev, "create", DB, "-n", namespace), 60)
    assert can_i(dev, "delete", DB, "-n", namespace)
    assert poll(lambda: can_i(auditor, "list", DB, "-n", namespace), 60)
    assert not can_i(auditor, "create", DB, "-n", namespace)
    # Listing OperatorConfigs in their namespace lets `kubectl get dbaas` work; writing them does not.
    assert can_i(dev, "list", OC, "-n", namespace)
    assert not can_i(dev, "create", OC, "-n", namespace)
    kube.helm("uninstall", "rel", "-n", namespace)
    assert poll(lambda: not can_i(dev, "create", DB, "-n", namespace), 60)
