"""The chart's opt-in roll-out of consumers: flag and RBAC only with operator.rolloutWorkloads, and the
RBAC follows the Database rules (cluster-wide, or one Role per watched namespace)."""

from __future__ import annotations

from test_chart_render import args_of, grants, of_kind, operator_cluster_role, render, rule_set

ROLLOUT_RULES = grants("apps", ["deployments", "statefulsets", "daemonsets"], ["list", "patch"])


def test_off_by_default() -> None:
    docs = render()
    assert "--rollout-workloads" not in args_of(docs)
    assert not rule_set(operator_cluster_role(docs)["rules"]) & ROLLOUT_RULES


def test_on_grants_list_and_patch_on_workloads_only() -> None:
    docs = render("operator.rolloutWorkloads=true")
    assert "--rollout-workloads" in args_of(docs)
    granted = rule_set(operator_cluster_role(docs)["rules"])
    assert granted >= ROLLOUT_RULES
    assert {(g, r, v, n) for g, r, v, n in granted if g == "apps"} == ROLLOUT_RULES  # no get, no update


def test_with_watched_namespaces_the_rules_are_namespaced() -> None:
    docs = render("operator.rolloutWorkloads=true", "operator.watchNamespaces={team-a}")
    assert not rule_set(operator_cluster_role(docs)["rules"]) & ROLLOUT_RULES
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["namespace"] == "team-a"]
    assert rule_set(role["rules"]) >= ROLLOUT_RULES
