"""The Helm chart, checked on `helm template` output: wiring, least privilege, no DSN outside a Secret.

These run the pinned helm binary (built by tests/e2e/controlplane/build.sh) but need no cluster; the
server-side checks (dry-run, install, upgrade, the operator running as the chart's ServiceAccount) are
in tests/e2e/test_chart.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "dbaasctl"
ALL_VALUES = REPO / "tests" / "e2e" / "data" / "chart-values-all.yaml"
BUILD = REPO / "tests" / "e2e" / "controlplane" / "build.sh"
KUBE_VERSION = "1.37.2"
NAMESPACED_KINDS = {
    "Deployment",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceMonitor",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Secret",
    "OperatorConfig",
}

Doc = dict[str, Any]


@cache
def helm_bin() -> str | None:
    candidates: list[Path] = []
    if os.environ.get("DBAASCTL_TESTBED_BIN"):
        candidates.append(Path(os.environ["DBAASCTL_TESTBED_BIN"]) / "helm")
    printed = subprocess.run(["bash", str(BUILD), "--print-bin"], capture_output=True, text=True, check=False)
    if printed.returncode == 0 and printed.stdout.strip():
        candidates.append(Path(printed.stdout.strip()) / "helm")
    on_path = shutil.which("helm")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def helm(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = helm_bin()
    if binary is None:
        pytest.skip("helm is not built yet: run `make testbed-binaries`")
    env = {**os.environ, "HELM_CACHE_HOME": "/nonexistent", "HELM_CONFIG_HOME": "/nonexistent"}
    proc = subprocess.run(
        [binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def render(
    *sets: str,
    values: Iterable[Path] = (),
    release: str | None = None,
    namespace: str = "ops",
    kube_version: str = KUBE_VERSION,
) -> list[Doc]:
    values = tuple(values)
    if release is None:
        # The all-options file names its release "all" in user-written label selectors.
        release = "all" if ALL_VALUES in values else "rel"
    args = ["template", release, str(CHART), "-n", namespace, f"--kube-version={kube_version}"]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    out = helm(*args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render_error(*sets: str, values: Iterable[Path] = ()) -> str:
    args = ["template", "rel", str(CHART), f"--kube-version={KUBE_VERSION}"]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, "rendering was expected to fail"
    return proc.stderr


def only(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = only(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc]) -> Doc:
    containers = pod_spec(docs)["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    c: Doc = containers[0]
    return c


def args_of(docs: list[Doc]) -> list[str]:
    return list(container(docs)["args"])


def flag(docs: list[Doc], name: str) -> str | None:
    for arg in args_of(docs):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def rule_set(rules: list[Doc]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """(apiGroup, resource, verb, resourceNames) for every combination a rule grants."""
    out: set[tuple[str, str, str, tuple[str, ...]]] = set()
    for rule in rules:
        names = tuple(rule.get("resourceNames", ()))
        for group in rule.get("apiGroups", ["<non-resource>"]):
            for resource in rule.get("resources", rule.get("nonResourceURLs", [])):
                for verb in rule["verbs"]:
                    out.add((group, resource, verb, names))
    return out


def grants(
    group: str, resources: Iterable[str], verbs: Iterable[str]
) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {(group, r, v, ()) for r in resources for v in verbs}


DATABASE_RULES = (
    grants("dbaasctl.io", ["databases"], ["get", "list", "watch", "patch"])
    | grants("dbaasctl.io", ["databases/status"], ["patch"])
    | grants("dbaasctl.io", ["databases/finalizers"], ["update"])
    | grants("", ["secrets"], ["get", "list", "watch", "create", "patch", "delete"])
    | grants("events.k8s.io", ["events"], ["create", "patch"])
)
CLUSTER_ONLY_RULES = grants("dbaasctl.io", ["databaseclasses"], ["get", "list", "watch"]) | grants(
    "", ["namespaces"], ["get", "list", "watch"]
)
METRICS_AUTH_RULES = grants("authentication.k8s.io", ["tokenreviews"], ["create"]) | grants(
    "authorization.k8s.io", ["subjectaccessreviews"], ["create"]
)


def operator_cluster_role(docs: list[Doc]) -> Doc:
    """The ClusterRole bound to the operator's ServiceAccount."""
    (binding,) = [
        b
        for b in of_kind(docs, "ClusterRoleBinding")
        if any(s.get("kind") == "ServiceAccount" for s in b["subjects"])
    ]
    return only(docs, "ClusterRole", binding["roleRef"]["name"])


def subset(small: dict[str, str], big: dict[str, str]) -> bool:
    return all(big.get(k) == v for k, v in small.items())


# --- lint and metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["defaults", "all-options"])
def test_lint_strict_is_clean(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), f"--kube-version={KUBE_VERSION}"]
    if values:
        args += ["-f", str(values)]
    proc = helm(*args, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # In lint mode a template `fail` is only logged at INFO; it must not happen either.
    for marker in ("[WARNING]", "[ERROR]", "Fail:"):
        assert marker not in output, output


def test_chart_metadata_matches_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.35.0-0"
    assert chart["appVersion"] == project["version"]
    docs = render()
    assert container(docs)["image"] == f"dbaasctl/dbaasctl:{project['version']}"


def test_kube_version_floor_is_enforced() -> None:
    binary = helm_bin()
    if binary is None:
        pytest.skip("helm is not built yet")
    proc = helm("template", "rel", str(CHART), "--kube-version=1.34.9", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr
    assert render(kube_version="1.35.0")


def test_schema_rejects_unknown_and_invalid_values() -> None:
    assert "replicaCnt" in render_error("replicaCnt=2")
    assert "logLevel" in render_error("operator.logLevel=verbose")
    assert "pullPolicy" in render_error("image.pullPolicy=Sometimes")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("operationTimeout=60 seconds", "operationTimeout"),
        ("rps=-1", "rps"),
        ("burst=10001", "burst"),
        ("maxConcurrentOperations=1.5", "maxConcurrentOperations"),
        ("allowedNamespaces.selector.matchExpressions[0].operator=Maybe", "operator"),
        ("allowedNamespces.names[0]=x", "allowedNamespces"),
    ],
)
def test_schema_refuses_endpoint_values_the_api_server_would(value: str, where: str) -> None:
    """Caught by `helm install` before anything is applied, not by the API server mid-release."""
    base = [
        "operatorConfig.dbms[0].databaseClassName=c",
        "operatorConfig.dbms[0].endpoints[0].name=pg-a",
        "operatorConfig.dbms[0].endpoints[0].dsn=postgresql://h/x",
    ]
    assert render(*base)
    assert where in render_error(*base, f"operatorConfig.dbms[0].endpoints[0].{value}")


def test_schema_refuses_invalid_database_classes() -> None:
    base = ["databaseClasses[0].name=c", "databaseClasses[0].spec.operations.create.name=c"]
    assert "operations" in render_error(*base, "databaseClasses[0].spec.driver=postgres")
    full = [*base, "databaseClasses[0].spec.operations.delete.name=d"]
    assert render(*full, "databaseClasses[0].spec.driver=postgres")
    assert "driver" in render_error(*full, "databaseClasses[0].spec.driver=oracle")
    assert "interval" in render_error(
        *full, "databaseClasses[0].spec.driver=postgres", "databaseClasses[0].spec.rotation.interval=30 days"
    )


# --- wiring: labels, selectors, ports -------------------------------------------------------------


@pytest.mark.parametrize("values", [(), (ALL_VALUES,)], ids=["defaults", "all-options"])
def test_every_selector_matches_the_operator_pods(values: tuple[Path, ...]) -> None:
    docs = render(values=values)
    deployment = only(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert subset(deployment["spec"]["selector"]["matchLabels"], pod_labels)

    service = only(docs, "Service")
    assert subset(service["spec"]["selector"], pod_labels)
    container_ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports

    pdb = only(docs, "PodDisruptionBudget")
    assert subset(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    for constraint in pod_spec(docs).get("topologySpreadConstraints", []):
        assert subset(constraint["labelSelector"]["matchLabels"], pod_labels)

    for policy in of_kind(docs, "NetworkPolicy"):
        assert subset(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                assert port["port"] in container_ports

    for monitor in of_kind(docs, "ServiceMonitor"):
        # A ServiceMonitor selects Services (which select the pods), by label and namespace.
        assert subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
            p["name"] for p in service["spec"]["ports"]
        }

    probes = [container(docs)["livenessProbe"], container(docs)["readinessProbe"]]
    assert [p["httpGet"]["path"] for p in probes] == ["/healthz", "/readyz"]
    assert {p["httpGet"]["port"] for p in probes} <= set(container_ports)
    health = flag(docs, "health-addr")
    metrics = flag(docs, "metrics-addr")
    assert health == f":{container_ports['health']}"
    assert metrics == f":{container_ports['metrics']}"


def test_pod_labels_from_values_cannot_detach_pods() -> None:
    docs = render("podLabels.app\\.kubernetes\\.io/instance=other", "podLabels.team=a")
    labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "rel"
    assert labels["team"] == "a"


def test_names_are_scoped_to_the_release() -> None:
    def identities(docs: list[Doc]) -> set[tuple[str, str, str]]:
        return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}

    one = render(release="one", namespace="ops")
    two = render(release="two", namespace="ops")
    assert not identities(one) & identities(two)
    # Same release name in another namespace: only namespaced objects may share a name.
    elsewhere = render(release="one", namespace="ops2")
    cluster_scoped = {i for i in identities(one) if not i[1]}
    assert cluster_scoped
    assert not cluster_scoped & identities(elsewhere)
    for doc in one:
        if doc["kind"] in NAMESPACED_KINDS:
            assert doc["metadata"]["namespace"] == "ops", doc["metadata"]
        assert "one" in doc["metadata"]["name"], doc["metadata"]["name"]


# --- the pod --------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), (ALL_VALUES,)], ids=["defaults", "all-options"])
def test_pod_runs_locked_down(values: tuple[Path, ...]) -> None:
    docs = render(values=values)
    pod = pod_spec(docs)
    c = container(docs)
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert csc["runAsNonRoot"] is True
    assert isinstance(psc["runAsUser"], int)
    assert psc["runAsUser"] > 0
    assert isinstance(csc["runAsUser"], int)
    assert csc["runAsUser"] > 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in csc["capabilities"]
    # A writable /tmp, since the root filesystem is read-only.
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]


def test_operator_flags_follow_values() -> None:
    docs = render(values=[ALL_VALUES])
    args = args_of(docs)
    assert flag(docs, "config-name") == "dbaas-config" == only(docs, "OperatorConfig")["metadata"]["name"]
    assert flag(docs, "workers") == "16"
    assert "--leader-elect" in args
    assert "--no-leader-elect" not in args
    assert flag(docs, "leader-election-id") == "dbaas-leader"
    assert (flag(docs, "lease-duration"), flag(docs, "renew-deadline"), flag(docs, "retry-period")) == (
        "30",
        "20",
        "4.5",
    )
    assert "--secure-metrics" in args
    assert flag(docs, "log-format") == "console"
    assert flag(docs, "log-level") == "debug"
    assert flag(docs, "watch-namespaces") == "team-a,team-b"
    assert args[-1] == "--log-level=trace"  # extraArgs last, so they override
    assert only(docs, "Deployment")["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert env["DBAASCTL_EXTRA"] == "1"
    assert container(docs)["image"].endswith("@sha256:" + "0" * 64)


@pytest.mark.parametrize("values", [(), (ALL_VALUES,)], ids=["defaults", "all-options"])
def test_operator_accepts_the_rendered_flags(values: tuple[Path, ...]) -> None:
    """The flags the chart renders pass `dbaasctl run`'s own parser and validation."""
    from dbaasctl.settings import parse_args

    docs = render(values=values)
    settings = parse_args(args_of(docs), environ={})
    assert settings.config_name == flag(docs, "config-name")
    assert settings.leader_elect is True
    assert settings.leader_election_id == flag(docs, "leader-election-id")
    assert settings.health_address is not None
    assert settings.metrics_address is not None
    if values:
        assert settings.workers == 16
        assert settings.lease_duration == 30.0
        assert settings.retry_period == 4.5
        assert settings.watch_namespaces == ("team-a", "team-b")
        assert settings.secure_metrics is True
        assert settings.log_level == "trace"  # extraArgs come last and win
    assert (
        parse_args(args_of(render("operator.leaderElection.enabled=false")), environ={}).leader_elect is False
    )


@pytest.mark.parametrize("values", [(), (ALL_VALUES,)], ids=["defaults", "all-options"])
def test_the_grace_period_outlasts_the_drain_the_event_flush_and_the_lease_release(
    values: tuple[Path, ...],
) -> None:
    """A SIGKILL before the Lease release makes every standby wait out a full lease."""
    from dbaasctl.kube.manager_settings import ManagerSettings
    from dbaasctl.settings import parse_args

    docs = render(values=values)
    settings = parse_args(args_of(docs), environ={})
    stop = ManagerSettings(
        leader_election=settings.leader_elect,
        renew_deadline=settings.renew_deadline,
        graceful_shutdown_timeout=settings.shutdown_timeout,
    ).stop_budget()
    assert pod_spec(docs)["terminationGracePeriodSeconds"] >= stop + 3
    error = render_error("terminationGracePeriodSeconds=30", "operator.shutdownTimeout=20")
    assert "must exceed operator.shutdownTimeout + renewDeadline + 5 (35)" in error


def test_leader_election_is_required_for_several_replicas() -> None:
    docs = render("operator.leaderElection.enabled=false")
    assert "--no-leader-elect" in args_of(docs)
    assert flag(docs, "leader-election-id") is None
    error = render_error("operator.leaderElection.enabled=false", "replicaCount=2")
    assert "leaderElection" in error
    assert "renewDeadline" in render_error("operator.leaderElection.retryPeriod=9")
    assert "leaseDuration" in render_error("operator.leaderElection.leaseDuration=5")


# --- RBAC -----------------------------------------------------------------------------------------


def test_cluster_role_is_least_privilege() -> None:
    docs = render()
    role = operator_cluster_role(docs)
    assert rule_set(role["rules"]) == DATABASE_RULES | CLUSTER_ONLY_RULES
    for rule in role["rules"]:
        assert "*" not in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", [])
    binding = only(docs, "ClusterRoleBinding", "ops-rel-dbaasctl")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": only(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": "ops",
        }
    ]
    # No metrics reader, no TokenReview/SubjectAccessReview without secure metrics.
    assert sorted(r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")) == [
        "ops-rel-dbaasctl",
        "ops-rel-dbaasctl-catalog",
        "ops-rel-dbaasctl-edit",
        "ops-rel-dbaasctl-view",
    ]


def test_secure_metrics_adds_only_review_rules() -> None:
    docs = render("metrics.secure=true")
    assert (
        rule_set(operator_cluster_role(docs)["rules"])
        == DATABASE_RULES | CLUSTER_ONLY_RULES | METRICS_AUTH_RULES
    )
    reader = only(docs, "ClusterRole", "ops-rel-dbaasctl-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


def test_release_namespace_role() -> None:
    docs = render()
    role = only(docs, "Role", "rel-dbaasctl")
    lease = flag(docs, "leader-election-id")
    assert lease == "rel-dbaasctl-leader"
    config = flag(docs, "config-name")
    assert config == "rel-dbaasctl"
    base = {("dbaasctl.io", "operatorconfigs", v, (config,)) for v in ("get", "list", "watch")} | {
        ("dbaasctl.io", "operatorconfigs/status", "patch", (config,))
    }
    election = grants("coordination.k8s.io", ["leases"], ["create"]) | {
        ("coordination.k8s.io", "leases", v, (lease,)) for v in ("get", "update")
    }
    # Cluster-wide mode: Secret reads and Events here come from the ClusterRole already.
    assert rule_set(role["rules"]) == base | election
    binding = only(docs, "RoleBinding", "rel-dbaasctl")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == pod_spec(docs)["serviceAccountName"]

    no_election = only(render("operator.leaderElection.enabled=false"), "Role", "rel-dbaasctl")
    assert rule_set(no_election["rules"]) == base

    own_reads = grants("", ["secrets"], ["get", "list", "watch"]) | grants(
        "events.k8s.io", ["events"], ["create", "patch"]
    )
    elsewhere = [
        r
        for r in of_kind(render("operator.watchNamespaces={team-a}"), "Role")
        if r["metadata"]["namespace"] == "ops" and r["metadata"]["name"] == "rel-dbaasctl"
    ]
    assert rule_set(elsewhere[0]["rules"]) == base | election | own_reads
    # Watching the release namespace itself: its per-namespace Role covers those reads.
    including = render("operator.watchNamespaces={team-a,ops}")
    own = [r for r in of_kind(including, "Role") if r["metadata"]["name"] == "rel-dbaasctl"]
    assert rule_set(own[0]["rules"]) == base | election


def test_watch_namespaces_turn_cluster_wide_access_into_roles() -> None:
    docs = render("operator.watchNamespaces={team-a,team-b}")
    assert rule_set(operator_cluster_role(docs)["rules"]) == CLUSTER_ONLY_RULES
    per_namespace = [r for r in of_kind(docs, "Role") if r["metadata"]["namespace"] != "ops"]
    assert operator_cluster_role(docs)["metadata"]["name"] == "ops-rel-dbaasctl"
    assert sorted(r["metadata"]["namespace"] for r in per_namespace) == ["team-a", "team-b"]
    for role in per_namespace:
        assert rule_set(role["rules"]) == DATABASE_RULES
        binding = next(
            b
            for b in of_kind(docs, "RoleBinding")
            if b["metadata"]["namespace"] == role["metadata"]["namespace"]
        )
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-dbaasctl", "namespace": "ops"}]


def test_aggregated_roles_extend_edit_and_view() -> None:
    docs = render()
    edit = only(docs, "ClusterRole", "ops-rel-dbaasctl-edit")
    view = only(docs, "ClusterRole", "ops-rel-dbaasctl-view")
    agg = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(agg) and v == "true"} == {
        agg + "edit",
        agg + "admin",
    }
    assert agg + "view" in view["metadata"]["labels"]
    assert ("dbaasctl.io", "databases", "create", ()) in rule_set(edit["rules"])
    view_rules = rule_set(view["rules"])
    assert {v for (_, _, v, _) in view_rules} == {"get", "list", "watch"}
    # Nothing on Secrets; OperatorConfigs only readable (so `kubectl get dbaas` works in a namespace).
    for role in (edit, view):
        assert not {r for r in rule_set(role["rules"]) if r[1] == "secrets"}
    assert {r for r in rule_set(edit["rules"]) | view_rules if r[1] == "operatorconfigs"} == grants(
        "dbaasctl.io", ["operatorconfigs"], ["get", "list", "watch"]
    )
    off = render("rbac.aggregateToDefaultRoles=false")
    assert {r["metadata"]["name"] for r in of_kind(off, "ClusterRole")} == {
        "ops-rel-dbaasctl",
        "ops-rel-dbaasctl-catalog",
    }


def test_catalogue_is_readable_by_the_configured_subjects() -> None:
    docs = render()
    catalog = only(docs, "ClusterRole", "ops-rel-dbaasctl-catalog")
    assert rule_set(catalog["rules"]) == grants("dbaasctl.io", ["databaseclasses"], ["get", "list", "watch"])
    everyone = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]
    assert only(docs, "ClusterRoleBinding", "ops-rel-dbaasctl-catalog")["subjects"] == everyone
    config_role = only(docs, "Role", "rel-dbaasctl-catalog")
    assert rule_set(config_role["rules"]) == {("dbaasctl.io", "operatorconfigs", "get", ("rel-dbaasctl",))}
    assert only(docs, "RoleBinding", "rel-dbaasctl-catalog")["subjects"] == everyone
    # Nobody, or a config the chart does not render (it may hold an inline DSN): no grant.
    none = render("rbac.catalogReaders=null")
    assert not [d for d in none if d["metadata"]["name"].endswith("-catalog")]
    own_config = render("operatorConfig.create=false")
    assert not [d for d in own_config if d["kind"] == "Role" and d["metadata"]["name"].endswith("-catalog")]


def test_template_works_offline_as_first_typed() -> None:
    """`helm template dbaasctl deploy/helm/dbaasctl`, from the repository root, no --kube-version."""
    proc = helm("template", "dbaasctl", "deploy/helm/dbaasctl", check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "kind: Deployment" in proc.stdout


def test_rbac_can_be_left_to_the_administrator() -> None:
    docs = render("rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=preexisting")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert pod_spec(docs)["serviceAccountName"] == "preexisting"
    assert "serviceAccount.name" in render_error("serviceAccount.create=false")


# --- configuration and secrets --------------------------------------------------------------------

DSN_MARKERS = ("postgresql://", "mariadb://", "s3cr%3Dt", ":pw@")


def test_dsns_live_only_in_secrets() -> None:
    docs = render(values=[ALL_VALUES])
    # The only ConfigMap is the dashboard's, and the loop below checks it like any other object.
    assert [c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")] == ["all-dbaas-dashboard"]
    for doc in docs:
        text = yaml.safe_dump(doc)
        if doc["kind"] == "Secret":
            continue
        if doc["kind"] == "DatabaseClass":
            continue  # secretFormat templates name the host, never a password
        for marker in DSN_MARKERS:
            assert marker not in text, f"{marker!r} leaked into {doc['kind']} {doc['metadata']['name']}"

    secrets = {s["metadata"]["name"]: s["stringData"] for s in of_kind(docs, "Secret")}
    assert secrets["all-dbaas-dsn"] == {
        "pg-inline": "postgresql://admin:s3cr%3Dt@pg.example.com:5432/postgres?sslmode=require",
        "maria-inline": "mariadb://root:pw@maria.example.com:3306/",
    }
    config = only(docs, "OperatorConfig")
    endpoints = [e for group in config["spec"]["dbms"] for e in group["endpoints"]]
    for endpoint in endpoints:
        assert "dsn" not in endpoint
        ref = endpoint["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], endpoint
    pg = next(e for e in endpoints if e["name"] == "pg-inline")
    # Every other endpoint field passes through untouched.
    assert pg["rps"] == 5
    assert pg["burst"] == 3
    assert pg["maxConcurrentOperations"] == 4
    assert pg["operationTimeout"] == "45s"
    assert pg["allowedNamespaces"] == {
        "names": ["team-a"],
        "selector": {"matchLabels": {"dbaasctl.io/postgres": "allowed"}},
    }
    assert config["spec"]["rps"] == 2.5
    assert config["spec"]["keepalive"] == 60


def test_default_config_has_no_endpoints_and_no_dsn_secret() -> None:
    docs = render()
    assert only(docs, "OperatorConfig")["spec"] == {"dbms": []}
    assert not of_kind(docs, "Secret")
    assert not of_kind(docs, "ServiceMonitor")
    assert not of_kind(docs, "PrometheusRule")
    assert not of_kind(docs, "ConfigMap")
    assert not of_kind(docs, "NetworkPolicy")
    assert not of_kind(docs, "DatabaseClass")
    off = render("operatorConfig.create=false", "operatorConfig.name=handmade")
    assert not of_kind(off, "OperatorConfig")
    assert flag(off, "config-name") == "handmade"


def test_chart_secrets_are_never_claimed_by_the_operator() -> None:
    for secret in of_kind(render(values=[ALL_VALUES]), "Secret"):
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert "dbaasctl.io/database" not in secret["metadata"]["labels"]


def test_endpoint_mistakes_fail_with_a_clear_message(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(
        yaml.safe_dump(
            {
                "operatorConfig": {
                    "dbms": [
                        {
                            "databaseClassName": "pg",
                            "endpoints": [
                                {
                                    "name": "a",
                                    "dsn": "postgres://x",
                                    "secretKeyRef": {"name": "s", "key": "k"},
                                }
                            ],
                        }
                    ]
                }
            }
        )
    )
    assert "/operatorConfig/dbms/0/endpoints/0': 'oneOf' failed" in render_error(values=[both])
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text(
        yaml.safe_dump(
            {
                "operatorConfig": {
                    "dbms": [
                        {"databaseClassName": "pg", "endpoints": [{"name": "a", "dsn": "postgres://x"}]},
                        {"databaseClassName": "my", "endpoints": [{"name": "a", "dsn": "mysql://y"}]},
                    ]
                }
            }
        )
    )
    assert 'endpoint name "a" is used twice' in render_error(values=[duplicate])


def test_database_class_templates_pass_through_verbatim() -> None:
    docs = render(values=[ALL_VALUES])
    source = yaml.safe_load(ALL_VALUES.read_text(encoding="utf-8"))["databaseClasses"]
    for wanted in source:
        rendered = only(docs, "DatabaseClass", wanted["name"])
        assert rendered["spec"] == wanted["spec"]
        assert "metadata" not in rendered or "namespace" not in rendered["metadata"]
    assert only(docs, "DatabaseClass", "all-values-postgres")["metadata"]["labels"]["tier"] == "gold"


def test_database_classes_survive_uninstall_by_default() -> None:
    cls = {"name": "keep-me", "spec": {"driver": "postgres"}}
    valid = (
        "databaseClasses[0].spec.operations.create.name=c",
        "databaseClasses[0].spec.operations.delete.name=d",
    )
    docs = render("databaseClasses[0].name=keep-me", "databaseClasses[0].spec.driver=postgres", *valid)
    assert only(docs, "DatabaseClass", cls["name"])["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep"
    }
    docs = render(
        "databaseClasses[0].name=keep-me",
        "databaseClasses[0].spec.driver=postgres",
        *valid,
        "keepDatabaseClassesOnUninstall=false",
    )
    assert "annotations" not in only(docs, "DatabaseClass", "keep-me")["metadata"]


def test_disruption_budget_and_network_policy() -> None:
    docs = render()
    assert only(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    docs = render(values=[ALL_VALUES])
    spec = only(docs, "PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == 2
    assert "maxUnavailable" not in spec
    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for r in policy["egress"] for p in r.get("ports", [])} >= {53, 443, 5432, 3306}
    ingress_only = only(render("networkPolicy.enabled=true"), "NetworkPolicy")["spec"]
    assert ingress_only["policyTypes"] == ["Ingress"]
    assert "egress" not in ingress_only


def test_service_monitor_speaks_https_with_secure_metrics() -> None:
    plain = only(render("metrics.serviceMonitor.enabled=true"), "ServiceMonitor")["spec"]["endpoints"][0]
    assert plain["scheme"] == "http"
    assert "bearerTokenFile" not in plain
    secure = only(render(values=[ALL_VALUES]), "ServiceMonitor")["spec"]["endpoints"][0]
    assert secure["scheme"] == "https"
    assert secure["bearerTokenFile"].endswith("/token")
    assert "needs metrics.service.enabled" in render_error(
        "metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"
    )
