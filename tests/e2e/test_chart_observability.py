"""The chart's alerts and dashboard: the PrometheusRule passes `promtool check rules` and the rule unit
tests in data/alerts-tests.yaml (`promtool test rules`), and every metric the alerts and the dashboard's
queries read is exported by a live operator's /metrics.

The metric names are taken from the expressions by the tokenizer in testbed/promql.py (promtool has no
command that lists an expression's selectors); its rules are tested here on tricky expressions too.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.controlplane import REPO, KubeTools, binaries_dir
from testbed.dbms import PostgresServer
from testbed.operator import (
    Observer,
    OperatorProcess,
    apply,
    database,
    install_postgres_procedures,
    operator_config,
    postgres_class,
    release_databases,
)
from testbed.promql import exported_names, grafana_to_promql, metric_names

CHART = REPO / "deploy" / "helm" / "dbaasctl"
DATA = Path(__file__).parent / "data"
RULE_TESTS = DATA / "alerts-tests.yaml"


def _helm() -> Path:
    return binaries_dir() / "helm"


def _promtool() -> Path:
    path = binaries_dir() / "promtool"
    assert path.exists(), f"{path} missing: run `make testbed-binaries`"
    return path


def render(*sets: str) -> list[dict[str, Any]]:
    """`helm template` offline (no cluster needed), as docs/helm.md shows it."""
    args = [
        str(_helm()),
        "template",
        "dbaasctl",
        str(CHART),
        "-n",
        "dbaasctl-system",
        "--kube-version=1.37.0",
    ]
    for value in sets:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render("alerts.enabled=true", "dashboard.enabled=true")


@pytest.fixture(scope="module")
def rule_groups(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = of_kind(rendered, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


@pytest.fixture(scope="module")
def dashboard(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in of_kind(rendered, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    doc: dict[str, Any] = json.loads(text)
    return doc


def alert_expressions(groups: list[dict[str, Any]]) -> dict[str, str]:
    return {r.get("alert") or r["record"]: str(r["expr"]) for g in groups for r in g["rules"]}


def dashboard_queries(dash: dict[str, Any]) -> dict[str, str]:
    """Every panel target (rows included) and every query variable, as PromQL."""
    out: dict[str, str] = {}

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                out[f"panel {panel['title']!r} {target['refId']}"] = grafana_to_promql(target["expr"])

    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out[f"variable {var['name']}"] = grafana_to_promql(query)
    return out


# --- off by default ---------------------------------------------------------------------------------


def test_alerts_and_dashboard_are_opt_in() -> None:
    docs = render()
    assert of_kind(docs, "PrometheusRule") == []
    assert [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")] == []


# --- promtool -----------------------------------------------------------------------------------------


def test_rules_pass_promtool_check_and_unit_tests(rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = _promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / "tests.yaml")
    checked = subprocess.run(
        [str(promtool), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [str(promtool), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert the chart ships has at least one unit test.
    covered: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]:
        covered |= {t["alertname"] for t in case.get("alert_rule_test") or []}
    assert set(alert_expressions(rule_groups)) == covered


def test_without_leader_election_the_operator_absent_alert_replaces_the_leader_alert(tmp_path: Path) -> None:
    (rule,) = of_kind(
        render("alerts.enabled=true", "operator.leaderElection.enabled=false"), "PrometheusRule"
    )
    names = set(alert_expressions(rule["spec"]["groups"]))
    assert "DbaasctlOperatorAbsent" in names
    assert "DbaasctlLeaderAbsent" not in names
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    checked = subprocess.run(
        [str(_promtool()), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- the metric-name tokenizer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'max by (reason) (dbaasctl_databases_not_ready{job="x", reason=~"a|b"}) > 0',
            {"dbaasctl_databases_not_ready"},
        ),
        (
            "histogram_quantile(0.99, sum by (name, le) (rate(workqueue_queue_duration_seconds_bucket[10m])))",
            {"workqueue_queue_duration_seconds_bucket"},
        ),
        ('absent(leader_election_master_status{job="j"} == 1)', {"leader_election_master_status"}),
        ("a / on(job) group_left(pod, instance) b offset 5m", {"a", "b"}),
        ("sum(rate(x_total[5m])) without (code) and ignoring(le) y_count", {"x_total", "y_count"}),
        ('{__name__="by_name_only", job="j"}', {"by_name_only"}),
        ('label_replace(up2, "dst", "$1", "src", "(.*)")', {"up2"}),
        ("count(z) or vector(0)", {"z"}),
        ('sum(rate(q_total{job=~"$job"}[$__rate_interval]))', {"q_total"}),
    ],
)
def test_metric_names_from_expressions(expr: str, names: set[str]) -> None:
    assert metric_names(grafana_to_promql(expr)) == names


def test_grafana_label_values_query_reads_only_its_selector() -> None:
    assert metric_names(grafana_to_promql('label_values(m_total{namespace=~"$namespace"}, job)')) == {
        "m_total"
    }


def test_exported_names_include_histogram_and_counter_samples_of_empty_families() -> None:
    scrape = (
        "# HELP h_seconds h\n# TYPE h_seconds histogram\n"
        "# HELP c_total c\n# TYPE c_total counter\n"
        "# HELP g g\n# TYPE g gauge\ng 1.0\n"
    )
    assert exported_names(scrape) == {
        "h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "c_total", "g",
    }  # fmt: skip


# --- against a live operator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_scrape(
    kube: KubeTools, crds: Path, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """/metrics of `dbaasctl run` (leader election on) after one Database went Ready on PostgreSQL."""
    suffix = secrets.token_hex(3)
    system = kube.create_namespace(f"obs-sys-{suffix}")
    app = kube.create_namespace(f"obs-app-{suffix}")
    dsn = install_postgres_procedures(postgres)
    cls = postgres_class(f"pg-obs-{suffix}")
    apply(
        kube,
        cls,
        operator_config("dbaasctl", system, [(cls["metadata"]["name"], [{"name": "pg", "dsn": dsn}])]),
    )
    operator = OperatorProcess(
        kube.kubeconfig,
        system,
        tmp_path_factory.mktemp("operator"),
        extra_args=[f"--watch-namespaces={app}", f"--leader-election-id=obs-{suffix}"],
        leader_elect=True,
    )
    operator.start()
    try:
        apply(kube, database("db1", app, "pg"))
        Observer(kube, operator).wait_db(app, "db1", "True", timeout=90)
        yield operator.metrics()
    finally:
        operator.stop()
        release_databases(kube, app)
        for ns in (app, system):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_every_metric_in_alerts_and_dashboard_is_exported(
    live_scrape: str, rule_groups: list[dict[str, Any]], dashboard: dict[str, Any]
) -> None:
    exported = exported_names(live_scrape)
    queries = {
        **{f"alert {k}": v for k, v in alert_expressions(rule_groups).items()},
        **dashboard_queries(dashboard),
    }
    used: dict[str, set[str]] = {}
    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        for name in names:
            used.setdefault(name, set()).add(where)
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert missing == {}, f"not exported by the operator: {missing}"
    # The scrape is the real thing: the reconciler, the queue and the REST client have all counted.
    assert {
        "controller_runtime_reconcile_total",
        "workqueue_adds_total",
        "rest_client_requests_total",
    } <= exported
    assert "leader_election_master_status" in exported
