"""Wiring details of `dbaasctl run` that decide what wakes a reconcile, and the controller's metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from dbaasctl.controller.database import DatabaseMetrics
from dbaasctl.observability.metrics import sample_value
from dbaasctl.operator import _endpoint_index, _owner_database, _without_status


def test_status_only_updates_are_ignored_but_spec_and_metadata_are_not() -> None:
    old = {"metadata": {"name": "a", "resourceVersion": "1", "generation": 1}, "spec": {"endpoint": "pg"}}
    status_only = {**old, "metadata": {**old["metadata"], "resourceVersion": "2"}, "status": {"x": 1}}
    assert _without_status(old) == _without_status(status_only)
    annotated = {**old, "metadata": {**old["metadata"], "annotations": {"dbaasctl.io/rotate": "true"}}}
    assert _without_status(old) != _without_status(annotated)
    deleting = {**old, "metadata": {**old["metadata"], "deletionTimestamp": "2024-01-01T00:00:00Z"}}
    assert _without_status(old) != _without_status(deleting)
    respec = {**old, "spec": {"endpoint": "pg", "deletionPolicy": "Retain"}}
    assert _without_status(old) != _without_status(respec)


def test_secret_events_map_to_the_owning_database() -> None:
    owned = {
        "metadata": {
            "namespace": "shop",
            "name": "x-credentials",
            "labels": {"dbaasctl.io/database": "truncated-label"},
            "ownerReferences": [{"apiVersion": "dbaasctl.io/v1", "kind": "Database", "name": "orders"}],
        }
    }
    assert _owner_database(owned) == "shop/orders"  # the owner reference has the full name
    labelled_only = {"metadata": {"namespace": "shop", "labels": {"dbaasctl.io/database": "orders"}}}
    assert _owner_database(labelled_only) == "shop/orders"
    assert _owner_database({"metadata": {"namespace": "shop"}}) is None


def test_endpoint_index() -> None:
    assert _endpoint_index({"spec": {"endpoint": "pg"}}) == ["pg"]
    assert _endpoint_index({"spec": {}}) == []


def test_not_ready_gauge_counts_by_reason_and_forgets() -> None:
    registry = CollectorRegistry()
    metrics = DatabaseMetrics(registry)

    def not_ready(reason: str) -> float | None:
        return sample_value(registry, "dbaasctl_databases_not_ready", {"reason": reason})

    metrics.ready("a/x", "False", "EndpointNotFound")
    metrics.ready("a/y", "False", "EndpointNotFound")
    metrics.ready("a/z", "False", "ClassNotFound")
    assert not_ready("EndpointNotFound") == 2
    metrics.ready("a/x", "True", "Provisioned")
    assert not_ready("EndpointNotFound") == 1
    metrics.ready("a/y", "False", "ClassNotFound")
    assert not_ready("EndpointNotFound") == 0
    assert not_ready("ClassNotFound") == 2
    metrics.forget("a/z")
    assert not_ready("ClassNotFound") == 1

    metrics.delete_failing("a/y", True)
    metrics.delete_failing("a/y", True)
    assert sample_value(registry, "dbaasctl_database_deletes_failing") == 1
    metrics.forget("a/y")
    assert sample_value(registry, "dbaasctl_database_deletes_failing") == 0
    metrics.count("create", True)
    assert (
        sample_value(
            registry, "dbaasctl_database_operations_total", {"operation": "create", "result": "success"}
        )
        == 1
    )
    assert (
        sample_value(
            registry, "dbaasctl_database_operations_total", {"operation": "delete", "result": "error"}
        )
        == 0
    )
